package instance

import (
	"fmt"
	"net/http"
	"time"
)

// HTTPConfig bound what slow, idle or too many clients can hold of a server:
// every connection is cut after a timeout, and at most MaxConnections are
// open at once. A zero value means the default, so that no server runs
// without the bounds.
type HTTPConfig struct {
	ReadHeaderTimeout time.Duration `default:"10s" env:"APIMETER_READ_HEADER_TIMEOUT" help:"Longest time to read a request's headers."`
	ReadTimeout       time.Duration `default:"30s" env:"APIMETER_READ_TIMEOUT" help:"Longest time to read a whole request, body included; a client sending slower is cut off."`
	WriteTimeout      time.Duration `default:"60s" env:"APIMETER_WRITE_TIMEOUT" help:"Longest time from the end of a request's headers to the end of its answer."`
	IdleTimeout       time.Duration `default:"60s" env:"APIMETER_IDLE_TIMEOUT" help:"How long an idle keep-alive connection is kept open."`
	MaxConnections    int           `default:"1024" env:"APIMETER_MAX_CONNECTIONS" help:"Most connections open at once; more wait to be accepted."`
}

// Defaults of HTTPConfig, used for zero values.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = 30 * time.Second
	defaultWriteTimeout      = 60 * time.Second
	defaultIdleTimeout       = 60 * time.Second
	defaultMaxConnections    = 1024
)

// Validate checks the HTTP server flags.
func (f HTTPConfig) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--read-header-timeout", f.ReadHeaderTimeout}, {"--read-timeout", f.ReadTimeout}, {"--write-timeout", f.WriteTimeout}, {"--idle-timeout", f.IdleTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative, got %v", d.name, d.v)
		}
	}
	if f.MaxConnections < 0 {
		return fmt.Errorf("--max-connections must not be negative, got %d", f.MaxConnections)
	}
	return nil
}

// withDefaults returns f with zero values replaced by the defaults.
func (f HTTPConfig) withDefaults() HTTPConfig {
	or := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	or(&f.ReadHeaderTimeout, defaultReadHeaderTimeout)
	or(&f.ReadTimeout, defaultReadTimeout)
	or(&f.WriteTimeout, defaultWriteTimeout)
	or(&f.IdleTimeout, defaultIdleTimeout)
	if f.MaxConnections == 0 {
		f.MaxConnections = defaultMaxConnections
	}
	return f
}

// server returns an http.Server for h with the timeouts of f.
func (f HTTPConfig) server(h http.Handler) *http.Server {
	f = f.withDefaults()
	return &http.Server{Handler: h, ReadHeaderTimeout: f.ReadHeaderTimeout, ReadTimeout: f.ReadTimeout,
		WriteTimeout: f.WriteTimeout, IdleTimeout: f.IdleTimeout}
}
