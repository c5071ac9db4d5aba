package moesif

import "testing"

// Moesif's Go middleware sends http.Request.RemoteAddr as the client IP
// when no forwarding header names one, port included.
func TestToEventClientIP(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"go sdk ipv4 with port", "127.0.0.1:47516", "127.0.0.1"},
		{"go sdk ipv6 with port", "[::1]:8080", "::1"},
		{"plain ipv4", "203.0.113.7", "203.0.113.7"},
		{"plain ipv6", "2001:db8::1", "2001:db8::1"},
		{"host name kept", "proxy.internal:3128", "proxy.internal:3128"},
		{"empty", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := Event{
				Request:  Request{Time: "2026-11-24T10:00:00.000Z", URI: "/x", Verb: "GET", IPAddress: c.in},
				Response: &Response{Status: 200},
			}
			ev, err := m.ToEvent("o", "e", -1)
			if err != nil {
				t.Fatal(err)
			}
			if ev.ClientIP != c.want {
				t.Errorf("ip_address %q stored as %q, want %q", c.in, ev.ClientIP, c.want)
			}
		})
	}
}
