// Package web is apimeter's dashboard: the sources under src/ and the
// bundle esbuild builds from them into dist/ (`npm run build`), which is
// committed and embedded in the binary, so the dashboard works offline and
// from a fresh clone with no npm. The dashboard reads only the public read
// APIs (Metrics API, events and their stream, usage); see docs/dashboard.md.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed dist
var dist embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// Handler serves the dashboard's files under Prefix. Every answer forbids
// loading anything from another origin (Content-Security-Policy), so the
// page never sends a request off the machine it came from.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time; its absence is a build error
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// The bundle's name does not change with its content: revalidate.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
