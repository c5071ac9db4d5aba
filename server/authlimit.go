package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Defaults of AuthLimitConfig.
const (
	DefaultAuthFailures = 50
	DefaultAuthWindow   = time.Minute
	DefaultAuthClients  = 10000
)

// AuthLimitConfig configures an AuthLimiter.
type AuthLimitConfig struct {
	// MaxFailures is how many failed authentications (an unknown, revoked
	// or malformed key) a client may make per Window; past it every
	// request of the client that needs a key is a 429 until the window
	// ends. Zero means DefaultAuthFailures.
	MaxFailures int
	// Window is the fixed window the failures are counted in. Zero means
	// DefaultAuthWindow.
	Window time.Duration
	// MaxClients bounds the clients counted at once (the memory taken);
	// past it the failures of new clients are counted together, so an
	// attacker spreading over many addresses is throttled as one. Zero
	// means DefaultAuthClients.
	MaxClients int
	// ClientIP returns the client's address (clientip.Resolver's, behind
	// trusted proxies). Nil means the peer's.
	ClientIP func(r *http.Request) string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// AuthLimiter throttles failed authentication per client address: keys
// are too long to guess, but a client answered as fast as it asks can
// still load the server and fill the logs. IPv6 clients are counted per
// /64, which one host usually holds whole.
type AuthLimiter struct {
	cfg AuthLimitConfig

	mu     sync.Mutex
	start  time.Time // of the window
	counts map[string]int
}

// overflowKey counts the failures of clients past MaxClients.
const overflowKey = "*"

// NewAuthLimiter returns an AuthLimiter for cfg.
func NewAuthLimiter(cfg AuthLimitConfig) *AuthLimiter {
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = DefaultAuthFailures
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultAuthWindow
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultAuthClients
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &AuthLimiter{cfg: cfg, counts: map[string]int{}}
}

func (l *AuthLimiter) client(r *http.Request) string {
	var s string
	if l.cfg.ClientIP != nil {
		s = l.cfg.ClientIP(r)
	} else if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		s = h
	} else {
		s = r.RemoteAddr
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Unmap().Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return s
}

// roll starts a new window when the current one is over.
func (l *AuthLimiter) roll(now time.Time) {
	if now.Sub(l.start) >= l.cfg.Window || now.Before(l.start) {
		l.start = now
		clear(l.counts)
	}
}

// Check returns a 429 *APIError when r's client has used up its failures
// in this window, else nil.
func (l *AuthLimiter) Check(r *http.Request) error {
	key := l.client(r)
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll(now)
	n, ok := l.counts[key]
	if !ok && len(l.counts) >= l.cfg.MaxClients {
		n = l.counts[overflowKey]
	}
	if n < l.cfg.MaxFailures {
		return nil
	}
	wait := max(1, int(l.start.Add(l.cfg.Window).Sub(now).Seconds()+0.999))
	return &APIError{Status: http.StatusTooManyRequests, Code: "too_many_failed_attempts", RetryAfter: wait,
		Message: fmt.Sprintf("more than %d failed authentications from this address in %s; retry after %d s", l.cfg.MaxFailures, l.cfg.Window, wait)}
}

// Failed counts a failed authentication of r's client.
func (l *AuthLimiter) Failed(r *http.Request) {
	key := l.client(r)
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll(now)
	if _, ok := l.counts[key]; !ok && len(l.counts) >= l.cfg.MaxClients {
		key = overflowKey
	}
	l.counts[key]++
}

// retryAfter is the Retry-After value of e, "" for none.
func retryAfter(e *APIError) string {
	switch {
	case e.RetryAfter > 0:
		return strconv.Itoa(e.RetryAfter)
	case e.Status == http.StatusServiceUnavailable:
		return "5"
	}
	return ""
}
