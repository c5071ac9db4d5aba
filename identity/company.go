package identity

import (
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter"
)

// CompanyRule derives the company of a call from its URL path, a request
// header or a JWT claim. Build one with ParseCompanyRule.
type CompanyRule struct {
	kind string // "url", "header" or "claim"
	name string // header or claim name
	// For url rules: the pattern's segments, where "{...}" captures and "*"
	// matches any one segment; anchored says the pattern began with "/".
	segs     []string
	capture  int
	anchored bool
}

// ParseCompanyRule reads a rule:
//
//	url:/accounts/{id}      the path segment at {id}; a leading "/" anchors
//	                        the pattern at the start of the path, otherwise
//	                        it may match at any segment; "*" matches any one
//	header:X-Company-Id     the header's value
//	claim:tenant_id         the JWT claim's value
func ParseCompanyRule(s string) (CompanyRule, error) {
	kind, arg, ok := strings.Cut(s, ":")
	arg = strings.TrimSpace(arg)
	if !ok || arg == "" {
		return CompanyRule{}, fmt.Errorf("company rule %q: want url:/accounts/{id}, header:NAME or claim:NAME", s)
	}
	r := CompanyRule{kind: kind, name: arg}
	switch kind {
	case "header", "claim":
		return r, nil
	case "url":
	default:
		return CompanyRule{}, fmt.Errorf("company rule %q: kind must be url, header or claim", s)
	}
	r.anchored = strings.HasPrefix(arg, "/")
	r.capture = -1
	for _, seg := range strings.Split(strings.Trim(arg, "/"), "/") {
		if seg == "" {
			continue
		}
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			if r.capture >= 0 {
				return CompanyRule{}, fmt.Errorf("company rule %q: only one {placeholder} allowed", s)
			}
			r.capture = len(r.segs)
		}
		r.segs = append(r.segs, seg)
	}
	if r.capture < 0 {
		return CompanyRule{}, fmt.Errorf("company rule %q: the URL pattern needs a {placeholder} segment", s)
	}
	return r, nil
}

// String returns the rule as ParseCompanyRule reads it.
func (r CompanyRule) String() string { return r.kind + ":" + r.name }

// Company returns the company the rule finds in e (and claims, which may
// be nil), or "".
func (r CompanyRule) Company(e *apimeter.Event, claims jwt.MapClaims) string {
	switch r.kind {
	case "header":
		return strings.TrimSpace(e.RequestHeaders.Get(r.name))
	case "claim":
		if claims == nil {
			return ""
		}
		return ClaimString(claims, r.name)
	case "url":
		return r.matchPath(e.Path)
	}
	return ""
}

func (r CompanyRule) matchPath(path string) string {
	// Walk the path's segments without allocating.
	var segs [16]string
	n := 0
	for rest := path; rest != "" && n < len(segs); {
		var s string
		s, rest, _ = strings.Cut(rest, "/")
		if s != "" {
			segs[n] = s
			n++
		}
	}
	last := n - len(r.segs)
	if r.anchored && last > 0 {
		last = 0
	}
	for off := 0; off <= last; off++ {
		ok := true
		for i, p := range r.segs {
			if i == r.capture || p == "*" {
				continue
			}
			if segs[off+i] != p {
				ok = false
				break
			}
		}
		if ok {
			return segs[off+r.capture]
		}
	}
	return ""
}
