package identity

import (
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/scrub"
)

// Edge applies the collector's claim-based rules to a live HTTP request,
// where its bearer token is still readable: in the capture middleware and
// the gateway, which send the token only as a fingerprint. Without it a
// claim:NAME company rule, or a user claim read with keys only the edge
// holds, can never match captured or gateway traffic. The edge sends what
// it finds as the event's user_id and company_id, which the collector
// keeps as a sender's.
type Edge struct {
	// JWT reads and verifies the bearer token (Authorization: Bearer);
	// nil reads none.
	JWT *JWT
	// Company are the company rules, tried in order as the collector
	// tries them (url: and header: rules included, so that the first rule
	// to match is the same one on both sides).
	Company []CompanyRule
}

// Subjects returns the user (the JWT's user claim) and the company (the
// first company rule that finds one) of r at time at; "" for each it
// cannot tell.
func (e *Edge) Subjects(r *http.Request, at time.Time) (user, company string) {
	if e == nil {
		return "", ""
	}
	var claims jwt.MapClaims
	if e.JWT != nil {
		if auth := r.Header.Get("Authorization"); auth != "" {
			if cl := e.JWT.Claims(scrub.BearerToken(auth), at); cl != nil {
				claims = cl
				user = ClaimString(cl, e.JWT.UserClaim())
			}
		}
	}
	if len(e.Company) > 0 {
		ev := apimeter.Event{Path: r.URL.Path}
		for k, vs := range r.Header {
			ev.RequestHeaders = append(ev.RequestHeaders, apimeter.Header{Name: k, Value: strings.Join(vs, ", ")})
		}
		for _, rule := range e.Company {
			if id := rule.Company(&ev, claims); id != "" {
				company = id
				break
			}
		}
	}
	return user, company
}

// Enabled reports whether e finds anything at all.
func (e *Edge) Enabled() bool {
	return e != nil && (e.JWT != nil || len(e.Company) > 0)
}
