package instance

import (
	"net/http"

	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/web"
)

// wireWeb serves the dashboard under /ui/ and sends / there.
func wireWeb(srv *server.Server) {
	srv.Handle("GET "+web.Prefix, web.Handler())
	srv.Handle("GET /{$}", http.RedirectHandler(web.Prefix, http.StatusFound))
}
