package portal_test

import (
	"context"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/portal/token"
)

// checkView: the first view's one answer is, part by part, what me, usage,
// events and quota answer the same token, for the current and the
// previous period; a token limited to some pages gets those parts only,
// and no error for the others.
func (e *env) checkView(t *testing.T, c token.Customer, tok string) {
	var me portal.MeJSON
	if code := e.do("GET", "/portal/api/v1/me", tok, nil, &me); code != http.StatusOK {
		t.Fatalf("me: %d", code)
	}
	var ev struct {
		Events []moesif.Event `json:"events"`
	}
	if code := e.do("GET", "/portal/api/v1/events?limit=50", tok, nil, &ev); code != http.StatusOK {
		t.Fatalf("events: %d", code)
	}
	var qa struct {
		Quotas []gateway.Headroom `json:"quotas"`
	}
	if code := e.do("GET", "/portal/api/v1/quota", tok, nil, &qa); code != http.StatusOK {
		t.Fatalf("quota: %d", code)
	}
	for _, period := range []string{"", "current", "previous"} {
		var u portal.UsageJSON
		if code := e.do("GET", "/portal/api/v1/usage?period="+period, tok, nil, &u); code != http.StatusOK {
			t.Fatalf("usage?period=%s: %d", period, code)
		}
		var v portal.ViewJSON
		if code := e.do("GET", "/portal/api/v1/view?period="+period, tok, nil, &v); code != http.StatusOK {
			t.Fatalf("view?period=%s: %d", period, code)
		}
		if !reflect.DeepEqual(v.Me, me) {
			t.Errorf("view?period=%s: me %+v, the me route %+v", period, v.Me, me)
		}
		if v.Usage == nil || !reflect.DeepEqual(*v.Usage, u) {
			t.Errorf("view?period=%s: usage %+v, the usage route %+v", period, v.Usage, u)
		}
		if v.Events == nil || !reflect.DeepEqual(*v.Events, ev.Events) {
			t.Errorf("view?period=%s: events differ from the events route's %d", period, len(ev.Events))
		}
		for _, m := range deref(v.Events) {
			if (c.Kind == token.KindCompany && m.CompanyID != c.ID) || (c.Kind == token.KindUser && m.UserID != c.ID) {
				t.Errorf("view: an event of %q/%q", m.UserID, m.CompanyID)
			}
		}
		if v.Quotas == nil || len(*v.Quotas) != len(qa.Quotas) {
			t.Errorf("view?period=%s: quotas %v, the quota route %v", period, v.Quotas, qa.Quotas)
		}
		if v.Meters != nil || v.Statements != nil {
			t.Errorf("view?period=%s: meters or statements on a server without them", period)
		}
	}
	if code := e.do("GET", "/portal/api/v1/view?period=13", tok, nil, nil); code != http.StatusBadRequest {
		t.Errorf("view?period=13: %d, want 400", code)
	}

	// A token of the same customer limited to recent calls.
	_, calls, err := e.tokens.Create(context.Background(), token.Spec{Org: "acme", Env: "prod", Customer: c, TTL: time.Hour, Pages: []string{portal.PageCalls}})
	if err != nil {
		t.Fatal(err)
	}
	var v portal.ViewJSON
	if code := e.do("GET", "/portal/api/v1/view", calls, nil, &v); code != http.StatusOK {
		t.Fatalf("view with a token of the calls page: %d", code)
	}
	if v.Usage != nil || v.Quotas != nil || v.Events == nil || !reflect.DeepEqual(*v.Events, ev.Events) || !reflect.DeepEqual(v.Me.Pages, []string{portal.PageCalls}) {
		t.Errorf("view with a token of the calls page: %+v", v)
	}
}

func deref[T any](p *[]T) []T {
	if p == nil {
		return nil
	}
	return *p
}
