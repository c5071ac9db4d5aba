package server

import (
	"fmt"
	"net/http"
	"path"
)

// A path with "." or ".." segments or doubled slashes is not routed:
// http.ServeMux would answer it with a redirect (307) to the cleaned
// path, which for an API is another resource (DELETE /v1/aliases/. would
// be sent on to DELETE /v1/aliases) and, for a client that does not
// follow redirects, an answer that is not JSON. apimeter answers it with
// a 400 naming the path it would have been.

// canonicalPath is p as http.ServeMux routes it: rooted, cleaned of "."
// and ".." segments and doubled slashes, a trailing slash kept.
func canonicalPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c
}

// pathError is the 400 for a request whose path is not canonical, or nil.
func pathError(r *http.Request) error {
	if r.Method == http.MethodConnect {
		return nil // ServeMux does not clean these either
	}
	if c := canonicalPath(r.URL.Path); c != r.URL.Path {
		return newError(http.StatusBadRequest, "invalid_path", fmt.Sprintf("path %q is not in canonical form (it would be %q): no route answers it", r.URL.Path, c))
	}
	return nil
}

// CanonicalPaths is h with requests whose path is not canonical answered
// with a 400, as a Server answers them: for handlers served on a mux of
// their own (tests of one package's routes).
func CanonicalPaths(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := pathError(r); err != nil {
			WriteError(w, r, nil, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}
