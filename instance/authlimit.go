package instance

import (
	"fmt"
	"net/http"
	"time"

	"github.com/apimeter/apimeter/clientip"
	"github.com/apimeter/apimeter/server"
)

// AuthLimitConfig throttles failed authentication and says which proxies'
// X-Forwarded-For is believed for the client's address.
type AuthLimitConfig struct {
	AuthFailures   int      `default:"50" env:"APIMETER_AUTH_FAILURES" help:"Failed authentications (wrong, revoked or malformed keys) allowed per client address per minute; past them the address gets 429 with Retry-After until the minute ends. 0 turns the throttle off."`
	TrustedProxies []string `env:"APIMETER_TRUSTED_PROXIES" help:"Addresses or networks (CIDR) of proxies in front of the server whose X-Forwarded-For is believed: the client is then the rightmost address that is not one of them."`
}

// limiter returns the server's AuthLimiter, nil when the throttle is off.
func (f AuthLimitConfig) limiter() (*server.AuthLimiter, error) {
	proxies, err := clientip.ParseProxies(f.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if f.AuthFailures <= 0 {
		return nil, nil
	}
	res := &clientip.Resolver{Proxies: proxies}
	return server.NewAuthLimiter(server.AuthLimitConfig{MaxFailures: f.AuthFailures, Window: time.Minute,
		ClientIP: func(r *http.Request) string { return res.ClientIP(r) }}), nil
}
