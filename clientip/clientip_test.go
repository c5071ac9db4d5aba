package clientip_test

import (
	"net/http/httptest"
	"testing"

	"github.com/apimeter/apimeter/clientip"
)

// TestClientIPTakesWhatTheTrustedProxyAppended: behind a trusted proxy
// the client is the rightmost untrusted X-Forwarded-For hop and always an
// IP address; the leftmost value, which the client chooses (even
// "not-an-ip<script>"), is never taken, as it was with trust_forwarded.
func TestClientIPTakesWhatTheTrustedProxyAppended(t *testing.T) {
	proxies, err := clientip.ParseProxies([]string{"10.0.0.0/8", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	behind := &clientip.Resolver{Proxies: proxies}
	peer := &clientip.Resolver{TrustPeer: true}
	none := &clientip.Resolver{}
	for _, c := range []struct {
		name   string
		res    *clientip.Resolver
		remote string
		xff    []string
		want   string
	}{
		{"no proxy trusted: the peer", none, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"peer not among the proxies", behind, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"one trusted proxy", behind, "10.1.2.3:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-chosen leftmost value ignored", behind, "10.1.2.3:5000", []string{"not-an-ip<script>, 198.51.100.1"}, "198.51.100.1"},
		{"spoofed leftmost IP ignored", behind, "10.1.2.3:5000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted proxies, two headers", behind, "10.1.2.3:5000", []string{"1.2.3.4, 198.51.100.1", "192.0.2.7"}, "198.51.100.1"},
		{"appended value not an IP: the hop that appended it", behind, "10.1.2.3:5000", []string{"198.51.100.1, <script>"}, "10.1.2.3"},
		{"no header: the proxy", behind, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"all trusted: the leftmost trusted", behind, "10.1.2.3:5000", []string{"10.9.9.9"}, "10.9.9.9"},
		{"ipv6 with port in the chain", behind, "[::ffff:10.0.0.1]:80", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"trust_forwarded: what the peer appended", peer, "203.0.113.9:5000", []string{"evil, 198.51.100.1"}, "198.51.100.1"},
		{"trust_forwarded: appended value not an IP", peer, "203.0.113.9:5000", []string{"not-an-ip<script>"}, "203.0.113.9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = c.remote
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := c.res.ClientIP(r); got != c.want {
				t.Errorf("ClientIP = %q, want %q", got, c.want)
			}
		})
	}
	if _, err := clientip.ParseProxies([]string{"proxy.internal"}); err == nil {
		t.Error("ParseProxies took a host name")
	}
}
