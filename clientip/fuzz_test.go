package clientip_test

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/apimeter/apimeter/clientip"
)

// FuzzClientIP: whatever X-Forwarded-For holds, the client is an IP
// address, and one the chain or the peer holds.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"", "198.51.100.1", "not-an-ip<script>, 10.0.0.1", "[2001:db8::1]:443, ,", "1.2.3.4,10.1.1.1,10.2.2.2"} {
		f.Add(s)
	}
	proxies, _ := clientip.ParseProxies([]string{"10.0.0.0/8"})
	res := &clientip.Resolver{Proxies: proxies}
	f.Fuzz(func(t *testing.T, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "10.9.9.9:1234"
		r.Header.Set("X-Forwarded-For", xff)
		got := res.ClientIP(r)
		if _, err := netip.ParseAddr(got); err != nil {
			t.Fatalf("X-Forwarded-For %q: client %q is not an IP address", xff, got)
		}
	})
}
