package server

import (
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// checkCrossSite refuses a state-changing request (any method but GET,
// HEAD and OPTIONS) whose only credential is a cookie unless the browser
// says it comes from apimeter's own pages, and unless its body is JSON.
// SameSite=Strict does not stop a page of the same site (another port of
// the host, a sibling subdomain) from posting a form or a text/plain
// fetch with the admin's cookie; such a page cannot set
// Sec-Fetch-Site: same-origin, nor send application/json without a CORS
// preflight that apimeter never answers. A key sent by Bearer or Basic is
// never added by a browser on its own, so those requests pass.
func checkCrossSite(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.Header.Get("Authorization") != "" || len(r.Header["Cookie"]) == 0 {
		return nil
	}
	if !sameOriginRequest(r) {
		return newError(http.StatusForbidden, "cross_site",
			"a change made with the session cookie must come from apimeter's own pages (Sec-Fetch-Site: same-origin); scripts send the key with Authorization: Bearer")
	}
	if r.ContentLength != 0 || r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/json" {
			return newError(http.StatusUnsupportedMediaType, "unsupported_media_type",
				"a change made with the session cookie must send Content-Type: application/json")
		}
	}
	return nil
}

// sameOriginRequest: Sec-Fetch-Site is same-origin, or, from a browser
// too old to send it, Origin names the host the browser asked for
// (X-Forwarded-Host behind a proxy that rewrites Host).
func sameOriginRequest(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
		host, _, _ = strings.Cut(fh, ",")
		host = strings.TrimSpace(host)
	}
	return u.Host == host
}
