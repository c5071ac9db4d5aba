package portal

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/server"
)

// ViewJSON is the answer of GET /portal/api/v1/view: what the page's
// first view shows, in one answer. Me is always there; Usage (page
// usage), Events (page calls, the 50 most recent), Quotas (page quota),
// Meters and Statements only when the token may read that page and the
// server keeps it. A page the token may not read is left out, not
// refused: the page then makes a single request before it can draw,
// instead of asking me first and then each page.
type ViewJSON struct {
	Me     MeJSON              `json:"me"`
	Usage  *UsageJSON          `json:"usage,omitempty"`
	Events *[]moesif.Event     `json:"events,omitempty"`
	Quotas *[]gateway.Headroom `json:"quotas,omitempty"`
	// Meters and Statements are the answers of the meters and statements
	// routes for the period (statements: the current calendar month).
	Meters     any `json:"meters,omitempty"`
	Statements any `json:"statements,omitempty"`
}

// viewEvents is how many recent calls the first view lists.
const viewEvents = 50

// view answers me, the usage and meters of the period parameter
// (current by default), the recent calls, the quota headroom and the
// statements. The parts are read concurrently: with cores to spare the
// answer waits for the slowest part rather than their sum; on any
// machine it saves the browser's round trips between them.
func (h *Handler) view(w http.ResponseWriter, r *http.Request, t *Token) {
	per, err := h.period(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := ViewJSON{Me: h.meOf(t)}
	ctx := r.Context()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	// part reads one page's part, when the token reads that page, each
	// into its own field of out.
	start := time.Now()
	took := map[string]time.Duration{}
	part := func(page string, read func() error) {
		if !slices.Contains(out.Me.Pages, page) {
			return
		}
		wg.Go(func() {
			t0 := time.Now()
			err := read()
			mu.Lock()
			defer mu.Unlock()
			took[page] = time.Since(t0)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	part(PageUsage, func() (err error) {
		out.Usage, err = h.usageOf(ctx, t, per)
		return err
	})
	part(PageCalls, func() error {
		f := apimeter.EventFilter{Org: t.Org, Env: t.Env, Limit: viewEvents}
		if t.Customer.Kind == KindCompany {
			f.CompanyID = t.Customer.ID
		} else {
			f.UserID = t.Customer.ID
		}
		ev, err := h.eventsOf(ctx, t, f)
		out.Events = &ev
		return err
	})
	part(PageQuota, func() error {
		qs, err := h.quotaState().Headroom(ctx, t.Org, t.Env, t.Customer.Kind, t.Customer.ID, h.cfg.Now())
		if qs == nil {
			qs = []gateway.Headroom{}
		}
		out.Quotas = &qs
		return err
	})
	part(PageMeters, func() (err error) {
		out.Meters, err = h.cfg.Meters.CustomerMeters(ctx, t.Org, t.Env, t.Customer, t.Meters, per.Start, per.End)
		return err
	})
	part(PageStatements, func() (err error) {
		out.Statements, err = h.cfg.Statements.CustomerStatements(ctx, t.Org, t.Env, t.Customer, t.Meters, "")
		return err
	})
	wg.Wait()
	var timing []string
	for _, p := range Pages() {
		if d, ok := took[p]; ok {
			timing = append(timing, fmt.Sprintf("%s;dur=%.1f", p, float64(d.Microseconds())/1000))
		}
	}
	timing = append(timing, fmt.Sprintf("total;dur=%.1f", float64(time.Since(start).Microseconds())/1000))
	w.Header().Set("Server-Timing", strings.Join(timing, ", "))
	if len(errs) > 0 {
		h.fail(w, r, errs[0])
		return
	}
	server.WriteJSON(w, http.StatusOK, out)
}
