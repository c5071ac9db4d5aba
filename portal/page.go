package portal

import (
	"embed"
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

// CSP returns the page's Content-Security-Policy for org: nothing but its
// own script, style and API, and framed only by the org's configured
// origins ('none' without any).
func (h *Handler) CSP(org string) string {
	anc := "'none'"
	if os := h.cfg.FrameOrigins[org]; len(os) > 0 {
		anc = strings.Join(os, " ")
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors " + anc
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	org, file := r.PathValue("org"), r.PathValue("file")
	ctype, ok := pageFiles[file]
	if !ok || !apps.ValidName(org) {
		h.fail(w, r, apiErr(http.StatusNotFound, "not_found", "no portal page at "+r.URL.Path))
		return
	}
	if file == "" {
		file = "index.html"
	}
	b, err := assets.ReadFile("assets/" + file)
	if err != nil {
		h.fail(w, r, err)
		return
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
