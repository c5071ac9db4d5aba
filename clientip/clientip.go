// Package clientip finds the address of the client of an HTTP request:
// the peer's, or behind proxies that are trusted, the address the last
// trusted proxy appended to X-Forwarded-For. The entries to the left of
// that one are whatever the client chose to send (any text at all), so
// they are never taken.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds client addresses. The zero Resolver trusts no proxy: the
// client is the peer.
type Resolver struct {
	// Proxies are the proxies in front of the server whose
	// X-Forwarded-For is believed.
	Proxies []netip.Prefix
	// TrustPeer believes the peer, whatever its address, as one proxy
	// (the gateway's trust_forwarded: true): the entry it appended is the
	// client, unless that entry is in Proxies too.
	TrustPeer bool
}

// ParseProxies reads proxy addresses and networks ("10.0.0.0/8",
// "192.0.2.7", "::1").
func ParseProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an IP address or network", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ClientIP returns the client's address: the peer's unless the peer is a
// trusted proxy; then X-Forwarded-For is walked from the right, past the
// trusted proxies, to the first address that is not one. An entry that
// is not an IP address ends the walk: the address to its right (the hop
// that appended it) is the client. The answer is always an IP address,
// or the peer's address as given when that is none (a Unix socket).
func (res *Resolver) ClientIP(r *http.Request) string {
	peer, ok := hostAddr(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !res.TrustPeer && !res.trusted(peer) {
		return peer.String()
	}
	client := peer
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, ok := hostAddr(strings.TrimSpace(parts[j]))
			if !ok {
				return client.String()
			}
			client = a
			if !res.trusted(a) {
				return client.String()
			}
		}
	}
	return client.String()
}

func (res *Resolver) trusted(a netip.Addr) bool {
	for _, p := range res.Proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hostAddr parses "ip", "ip:port" or "[ip]:port".
func hostAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}
