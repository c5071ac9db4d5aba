package capture

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/apimeter/apimeter/clientip"
)

// ForwardedFor is an Options.ClientIP for a service behind a proxy you
// run: the address that proxy appended to X-Forwarded-For, the last one of
// the chain (the ones before it are whatever the client wrote), when it is
// an IP address; else the peer's address. The leftmost value, which a
// client chooses freely, is never taken. Package clientip holds the rule.
func ForwardedFor(r *http.Request) string { return trustPeer.ClientIP(r) }

var trustPeer = clientip.Resolver{TrustPeer: true}

// PeerIP is the host of r.RemoteAddr.
func PeerIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// isIP reports whether s is an IP address (the event's ip_address must be
// one; a ClientIP that returns anything else is ignored).
func isIP(s string) bool {
	_, err := netip.ParseAddr(strings.TrimSpace(s))
	return err == nil
}
