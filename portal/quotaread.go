package portal

import (
	"net/http"

	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/server"
)

// QuotaRoutes are the read API's routes for a customer's quotas: the
// gateway's quotas that count the user's (company's) calls, each with its
// current window's use. They need a read key of the org, as every route
// under /v1/o/{org} does; the dashboard's customer page reads them.
var QuotaRoutes = map[string]string{
	"GET /v1/o/{org}/environments/{env}/users/{id}/quotas":     KindUser,
	"GET /v1/o/{org}/environments/{env}/companies/{id}/quotas": KindCompany,
}

// registerQuotaRead serves QuotaRoutes from the same quota state as the
// portal's quota page.
func (h *Handler) registerQuotaRead(mux Mux) {
	for pattern, kind := range QuotaRoutes {
		mux.HandleScope(pattern, server.RouteScope(pattern), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			qs := []gateway.Headroom{}
			if st := h.quotaState(); st != nil {
				var err error
				if qs, err = st.Headroom(r.Context(), r.PathValue("org"), r.PathValue("env"), kind, r.PathValue("id"), h.cfg.Now()); err != nil {
					h.fail(w, r, err)
					return
				}
			}
			server.WriteJSON(w, http.StatusOK, map[string]any{"quotas": qs})
		}))
	}
}
