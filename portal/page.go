package portal

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/apimeter/apimeter/apps"
)

// The page is three small files written for it, with no bundler and no
// library: it is shown inside other sites, so it stays a few kilobytes,
// loads nothing from elsewhere and draws its one chart as SVG.
//
//go:embed assets
var assets embed.FS

var pageFiles = map[string]string{
	"":           "text/html; charset=utf-8",
	"index.html": "text/html; charset=utf-8",
	"portal.js":  "text/javascript; charset=utf-8",
	"portal.css": "text/css; charset=utf-8",
}

// The page is served with its style and script inside it, so that the
// browser draws it and sends its one API request after a single request
// for the page rather than three (docs/performance.md). The policy lets
// exactly these two inline blocks run, by their SHA-256.
var inlinePage, scriptHash, styleHash = inline()

// inline makes the page with portal.css and portal.js inside it, in place
// of the <link> and <script> tags that name them in index.html.
func inline() (page []byte, scriptHash, styleHash string) {
	read := func(name string) string {
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	html, css, js := read("index.html"), read("portal.css"), read("portal.js")
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	for _, r := range []struct{ tag, inlined string }{
		{`<link rel="stylesheet" href="portal.css">`, "<style>" + css + "</style>"},
		{`<script src="portal.js"></script>`, "<script>" + js + "</script>"},
	} {
		if strings.Count(html, r.tag) != 1 || strings.Contains(css, "</style") || strings.Contains(js, "</script") {
			panic("portal: the page's assets cannot be inlined: " + r.tag)
		}
		html = strings.Replace(html, r.tag, r.inlined, 1)
	}
	return []byte(html), hash(js), hash(css)
}

// CSP returns the page's Content-Security-Policy for org: nothing but its
// own script, style and API, and framed only by the org's configured
// origins ('none' without any).
func (h *Handler) CSP(org string) string {
	anc := "'none'"
	if os := h.cfg.FrameOrigins[org]; len(os) > 0 {
		anc = strings.Join(os, " ")
	}
	return "default-src 'none'; script-src 'self' " + scriptHash + "; style-src 'self' " + styleHash +
		"; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors " + anc
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	org, file := r.PathValue("org"), r.PathValue("file")
	ctype, ok := pageFiles[file]
	if !ok || !apps.ValidName(org) {
		h.fail(w, r, apiErr(http.StatusNotFound, "not_found", "no portal page at "+r.URL.Path))
		return
	}
	b := inlinePage
	if file != "" && file != "index.html" {
		var err error
		if b, err = assets.ReadFile("assets/" + file); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	hd := w.Header()
	hd.Set("Content-Type", ctype)
	hd.Set("Content-Security-Policy", h.CSP(org))
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}
