package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/internal/breaker"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
)

// Options are what a Gateway needs besides its Config.
type Options struct {
	// Sink makes the capture Sink of each upstream. Required.
	Sink SinkFunc
	// Counter keeps quota counters. Nil means a MemoryCounter.
	Counter Counter
	// QuotaProbeAfter is how long quota checks are skipped after the
	// counter store failed repeatedly, before one is tried again. Zero
	// means 5 s.
	QuotaProbeAfter time.Duration
	// Transport forwards calls upstream. Nil means one built from
	// Config.Timeouts.
	Transport http.RoundTripper
	Logger    *slog.Logger
	// Identity are the host's identity rules (apimeter gateway's --jwt-*
	// and --company-rule flags; serve's own for its --gateway-config),
	// applied to each call while its token is readable. A config file
	// with jwt_secrets, jwt_claim or company_rules replaces them with its
	// own. Nil: only the file's.
	Identity *identity.Edge
}

// Stats are a Gateway's counters since it was created.
type Stats struct {
	// Capture sums the capture counters of every upstream: Dropped and
	// Failed count the events lost (queue full, collector down), Queued
	// those waiting.
	Capture capture.Stats
	// Blocked counts the calls answered 429 by a quota.
	Blocked int64
	// UpstreamErrors counts the calls answered 502 or 504.
	UpstreamErrors int64
	// QuotaErrors counts quota checks that failed (Redis down, or no
	// answer within timeouts.quota); those calls were forwarded.
	QuotaErrors int64
	// QuotaSkipped counts the calls forwarded without a quota check
	// because the counter store's circuit was open (it failed
	// repeatedly); QuotaBreakerOpen says whether it is open now.
	QuotaSkipped     int64
	QuotaBreakerOpen bool
	// NoRoute counts the calls no upstream matched (404, not recorded).
	NoRoute int64
}

// Gateway is a reverse proxy that records every call with the capture
// middleware and enforces quotas. It is an http.Handler.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	upstreams []*upstream
	quotas    *quotas
	// edge names the user and company of each call from its token and
	// the company rules; fromHost says it came from Options.Identity.
	edge     *identity.Edge
	fromHost bool
	scrub    *scrub.Scrubber // fingerprints of API keys for quotas

	blocked, upstreamErrors, quotaErrors, quotaSkipped, noRoute atomic.Int64

	hs   *http.Server // set by Start
	addr net.Addr
	done chan error
}

// upstream is one API behind the gateway, with its own capture.
type upstream struct {
	Upstream
	g       *Gateway
	target  *url.URL
	host    string // lower case, no port
	routes  *routeMux
	proxy   *httputil.ReverseProxy
	capture *capture.Capture
	handler http.Handler // capture around serve

	needUser, needKey bool // a quota of this API counts users, API keys
}

// call is what the gateway learns about one call, shared by the proxy's
// transport and the capture callbacks through the request's context.
type call struct {
	u        *upstream
	subjects subjects
	resolved bool // subjects filled
	blocked  *verdict
	target   *url.URL
	start    time.Time
	end      atomic.Int64 // unix nanoseconds the upstream's answer ended
}

type callKey struct{}

func callOf(r *http.Request) *call {
	c, _ := r.Context().Value(callKey{}).(*call)
	return c
}

// New builds a Gateway for cfg (which it checks) and starts the capture of
// each upstream. Close stops them.
func New(cfg Config, opts Options) (*Gateway, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if opts.Sink == nil {
		return nil, errors.New("gateway: Options.Sink is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, log: opts.Logger, scrub: scrub.New(nil, nil, 0)}
	if opts.Identity != nil && len(cfg.JWTSecrets) == 0 && cfg.JWTClaim == "" && len(cfg.CompanyRules) == 0 {
		g.edge, g.fromHost = opts.Identity, true
	} else {
		jo := identity.JWTOptions{UserClaim: cfg.JWTClaim}
		for _, s := range cfg.JWTSecrets {
			jo.HMACSecrets = append(jo.HMACSecrets, []byte(s))
		}
		g.edge = &identity.Edge{JWT: identity.NewJWT(jo)}
		for _, s := range cfg.CompanyRules {
			r, _ := identity.ParseCompanyRule(s) // checked by Check
			g.edge.Company = append(g.edge.Company, r)
		}
	}
	if len(cfg.Quotas) > 0 {
		g.quotas = &quotas{rules: cfg.Quotas, counter: opts.Counter, periods: identity.Periods{AnchorDay: cfg.BillingDay}}
		if cfg.BillingTZ != "" {
			g.quotas.periods.Location, _ = time.LoadLocation(cfg.BillingTZ)
		}
		if g.quotas.counter == nil {
			g.quotas.counter = NewMemoryCounter()
		}
		if _, inProcess := g.quotas.counter.(*MemoryCounter); !inProcess {
			// A counter store across the network may hang: each check
			// gets a deadline, and repeated failures open the circuit so
			// that calls stop waiting on it at all.
			timeout := cfg.Timeouts.Quota.or(breaker.DefaultTimeout)
			if timeout == 0 {
				timeout = -1 // timeouts.quota negative: no deadline (the breaker still opens on errors)
			}
			g.quotas.guard = breaker.New(breaker.Config{Name: "quota counters", Timeout: timeout,
				OpenFor: opts.QuotaProbeAfter, Detach: true, Logger: g.log})
		}
	}
	tr := opts.Transport
	if tr == nil {
		tr = NewTransport(cfg.Timeouts)
	}
	tr = timingTransport{tr}
	for _, uc := range cfg.Upstreams {
		u, err := g.newUpstream(uc, tr, opts.Sink)
		if err != nil {
			g.Close(context.Background())
			return nil, err
		}
		g.upstreams = append(g.upstreams, u)
	}
	return g, nil
}

// NewTransport returns the http.Transport the gateway forwards with, for
// the timeouts given: keep-alive connections to each upstream, as many
// idle ones as concurrent calls need.
func NewTransport(t Timeouts) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: t.Dial.or(5 * time.Second), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       t.UpstreamIdle.or(90 * time.Second),
		ResponseHeaderTimeout: t.Upstream.or(30 * time.Second),
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   t.Dial.or(5 * time.Second),
		// The upstream's encoding goes to the client as it is.
		DisableCompression: true,
	}
}

func (g *Gateway) newUpstream(uc Upstream, tr http.RoundTripper, sinkFor SinkFunc) (*upstream, error) {
	target, _ := url.Parse(uc.URL) // checked by Check
	routes, _ := newRouteMux(uc.Routes)
	u := &upstream{Upstream: uc, g: g, target: target, routes: routes}
	u.host = strings.ToLower(uc.Host)
	if g.quotas != nil {
		u.needUser, u.needKey = g.quotas.needs(uc.Name)
	}
	u.proxy = &httputil.ReverseProxy{
		Rewrite:      u.rewrite,
		Transport:    tr,
		ErrorHandler: u.proxyError,
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		// Streams (unknown length, text/event-stream) are flushed at
		// once by ReverseProxy; other bodies are copied through its
		// buffer.
	}
	sink, err := sinkFor(uc)
	if err != nil {
		return nil, err
	}
	logBody := g.cfg.LogBody == nil || *g.cfg.LogBody
	var jwtKey any
	var jwtMethods []string
	if len(g.cfg.JWTSecrets) == 1 {
		// capture verifies with one key; with several, the gateway's
		// identity.JWT names the user (IdentifyUser below).
		jwtKey, jwtMethods = []byte(g.cfg.JWTSecrets[0]), []string{"HS256", "HS384", "HS512"}
	}
	opts := capture.Options{
		Sink:                 sink,
		APIName:              uc.Name,
		LogBody:              logBody,
		MaxBodyBytes:         g.cfg.MaxBodyBytes,
		QueueSize:            g.cfg.QueueSize,
		SampleRate:           g.cfg.SampleRate,
		SecretHeaders:        g.cfg.SecretHeaders,
		SecretParams:         g.cfg.SecretParams,
		DisableTransactionID: g.cfg.DisableTransactionID,
		JWTKey:               jwtKey,
		JWTMethods:           jwtMethods,
		RouteFunc:            u.routes.route,
		Target:               targetOf,
		Metadata:             metadataOf,
		Logger:               g.log,
	}
	if routes == nil {
		opts.RouteFunc = func(*http.Request) string { return "" }
	}
	if g.cfg.JWTClaim != "" && g.cfg.JWTClaim != "sub" || len(g.cfg.JWTSecrets) > 1 || u.needUser || g.fromHost && g.edge.JWT != nil {
		opts.IdentifyUser = func(r *http.Request, _ capture.Response) string { return g.subjects(r).user }
	}
	if len(g.edge.Company) > 0 {
		opts.IdentifyCompany = func(r *http.Request, _ capture.Response) string { return g.subjects(r).company }
	}
	if g.cfg.TrustForwarded {
		opts.ClientIP = capture.ForwardedFor
	}
	c, err := capture.New(opts)
	if err != nil {
		sink.Close(context.Background())
		return nil, fmt.Errorf("upstream %s: %w", uc.Name, err)
	}
	u.capture = c
	u.handler = c.Middleware(http.HandlerFunc(u.serve))
	return u, nil
}

// ServeHTTP routes a call to its upstream.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		// The gateway fronts APIs; it is not a forward proxy, and a tunnel
		// would carry calls past metering.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		server.WriteError(w, r, g.log, &server.APIError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Message: "CONNECT is not forwarded: the gateway is a reverse proxy for APIs, not a tunnel"})
		return
	}
	u := g.route(r)
	if u == nil {
		g.noRoute.Add(1)
		server.WriteError(w, r, g.log, &server.APIError{Status: http.StatusNotFound, Code: "no_upstream",
			Message: fmt.Sprintf("no upstream API is configured for host %q and path %q", r.Host, r.URL.Path)})
		return
	}
	c := &call{u: u}
	u.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
}

// route picks the upstream with the longest matching path prefix; at equal
// length one that names the host wins over one that does not.
func (g *Gateway) route(r *http.Request) *upstream {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	var best *upstream
	for _, u := range g.upstreams {
		if u.host != "" && !strings.EqualFold(u.host, host) {
			continue
		}
		if p := u.PathPrefix; p != "" {
			path := r.URL.Path
			if !strings.HasPrefix(path, p) || len(path) > len(p) && path[len(p)] != '/' {
				continue
			}
		}
		if best == nil || len(u.PathPrefix) > len(best.PathPrefix) ||
			len(u.PathPrefix) == len(best.PathPrefix) && u.host != "" && best.host == "" {
			best = u
		}
	}
	return best
}

// serve runs inside the capture middleware: quotas, then the proxy.
func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	c := callOf(r)
	if q := u.g.quotas; q != nil && c != nil {
		s := u.g.subjects(r)
		v, err := q.check(r.Context(), u.Name, s, time.Now())
		if err != nil {
			// Failing open: a counter store that is down must not take
			// the API down with it. The breaker logs its changes of
			// state; a line per call would flood the log.
			if errors.Is(err, breaker.ErrOpen) {
				u.g.quotaSkipped.Add(1)
			} else {
				u.g.quotaErrors.Add(1)
			}
			u.g.log.Debug("gateway: quota check failed; call forwarded", "api", u.Name, "err", err)
		} else if v != nil {
			c.blocked = v
			u.g.blocked.Add(1)
			secs := int64(math.Ceil(v.retryAfter.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(max(1, secs), 10))
			server.WriteError(w, r, u.g.log, &server.APIError{Status: http.StatusTooManyRequests, Code: "quota_exceeded",
				Message: fmt.Sprintf("quota %q allows %d calls per %s for %s %s; retry after %d s",
					v.quota.Name, v.limit, strings.ReplaceAll(v.quota.Per, "_", " "), strings.ReplaceAll(v.quota.By, "_", " "), v.subject, max(1, secs))})
			return
		}
	}
	u.proxy.ServeHTTP(w, r)
}

// subjects returns who made the call, worked out once per call.
func (g *Gateway) subjects(r *http.Request) *subjects {
	c := callOf(r)
	if c == nil {
		return &subjects{}
	}
	if c.resolved {
		return &c.subjects
	}
	c.resolved = true
	s := &c.subjects
	s.user, s.company = g.edge.Subjects(r, time.Now())
	if c.u.needKey {
		key := ""
		for _, h := range scrub.APIKeyHeaders {
			if v := r.Header.Get(h); v != "" {
				key = v
				break
			}
		}
		if key == "" {
			key = scrub.QueryAPIKey(r.URL.RawQuery)
		}
		if key != "" {
			s.apiKey = g.scrub.Fingerprint(key)
		}
	}
	return s
}

// rewrite builds the upstream request.
func (u *upstream) rewrite(pr *httputil.ProxyRequest) {
	if u.StripPrefix {
		pr.Out.URL.Path = strings.TrimPrefix(pr.Out.URL.Path, u.PathPrefix)
		if pr.Out.URL.RawPath != "" {
			pr.Out.URL.RawPath = strings.TrimPrefix(pr.Out.URL.RawPath, u.PathPrefix)
		}
	}
	pr.SetURL(u.target)
	if u.g.cfg.TrustForwarded {
		// SetXForwarded appends the client to the chain it was sent.
		pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	}
	pr.SetXForwarded()
	// A client must not choose the address the upstream believes it has:
	// X-Real-IP is the gateway's own finding, True-Client-IP (set by some
	// CDNs) is not passed on.
	pr.Out.Header.Del("True-Client-IP")
	pr.Out.Header.Set("X-Real-IP", u.g.clientIP(pr.In))
	if u.g.cfg.TrustForwarded {
		for _, h := range []string{"X-Forwarded-Proto", "X-Forwarded-Host"} {
			if v := pr.In.Header[h]; len(v) > 0 {
				pr.Out.Header[h] = v
			}
		}
	}
	if u.PreserveHost {
		pr.Out.Host = pr.In.Host
	}
}

// proxyError answers a call the upstream did not: 504 when it timed out,
// 502 otherwise, as JSON. A client that went away gets nothing (recorded
// as 499, nginx's "client closed request").
func (u *upstream) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		w.WriteHeader(499)
		return
	}
	u.g.upstreamErrors.Add(1)
	status, code, what := http.StatusBadGateway, "bad_gateway", "could not be reached or broke off its answer"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		status, code, what = http.StatusGatewayTimeout, "gateway_timeout", "did not answer in time"
	}
	u.g.log.Warn("gateway: upstream failed", "api", u.Name, "status", status, "err", err)
	server.WriteError(w, r, u.g.log, &server.APIError{Status: status, Code: code,
		Message: fmt.Sprintf("the upstream of API %q %s", u.Name, what)})
}

// clientIP is the caller's address: the peer's, or behind a trusted proxy
// the address that proxy appended to X-Forwarded-For when it is an IP
// address (the values left of it are whatever the client sent; package
// clientip).
func (g *Gateway) clientIP(r *http.Request) string {
	if g.cfg.TrustForwarded {
		return capture.ForwardedFor(r)
	}
	return capture.PeerIP(r)
}

// targetOf tells capture where the call went and how long the upstream
// took: from sending the request to the end of its answer's body.
func targetOf(r *http.Request, _ capture.Response) capture.Target {
	c := callOf(r)
	if c == nil || c.target == nil {
		return capture.Target{}
	}
	end := c.end.Load()
	if end == 0 {
		end = time.Now().UnixNano()
	}
	// Without the query: it may carry a key (the scrubber cleans the
	// call's own URI, not this one), and a query would make every call's
	// target_url a group of its own.
	t := url.URL{Scheme: c.target.Scheme, Host: c.target.Host, Path: c.target.Path, RawPath: c.target.RawPath}
	return capture.Target{URL: t.String(), Latency: time.Duration(end - c.start.UnixNano())}
}

// metadataOf marks a call a quota blocked.
func metadataOf(r *http.Request, _ capture.Response) map[string]any {
	c := callOf(r)
	if c == nil || c.blocked == nil {
		return nil
	}
	v := c.blocked
	return map[string]any{"blocked_by": v.quota.Name, "quota": map[string]any{
		"by": v.quota.By, "per": v.quota.Per, "limit": v.limit, "subject": v.subject}}
}

// timingTransport notes when a call was sent upstream and when its answer
// ended, for target_response_time.
type timingTransport struct{ rt http.RoundTripper }

func (t timingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c, _ := req.Context().Value(callKey{}).(*call)
	if c == nil {
		return t.rt.RoundTrip(req)
	}
	c.target = req.URL
	c.start = time.Now()
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		// An upgraded connection's body must stay the io.ReadWriteCloser
		// ReverseProxy hijacks with.
		c.end.Store(time.Now().UnixNano())
		return resp, err
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type timedBody struct {
	io.ReadCloser
	c *call
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.c.end.CompareAndSwap(0, time.Now().UnixNano())
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.c.end.CompareAndSwap(0, time.Now().UnixNano())
	return b.ReadCloser.Close()
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	s := Stats{Blocked: g.blocked.Load(), UpstreamErrors: g.upstreamErrors.Load(), QuotaErrors: g.quotaErrors.Load(),
		QuotaSkipped: g.quotaSkipped.Load(), NoRoute: g.noRoute.Load()}
	if g.quotas != nil && g.quotas.guard != nil {
		s.QuotaBreakerOpen = g.quotas.guard.Open()
	}
	for _, u := range g.upstreams {
		cs := u.capture.Stats()
		s.Capture.Enqueued += cs.Enqueued
		s.Capture.Queued += cs.Queued
		s.Capture.Sent += cs.Sent
		s.Capture.Dropped += cs.Dropped
		s.Capture.Failed += cs.Failed
		s.Capture.Refused += cs.Refused
		s.Capture.Skipped += cs.Skipped
		s.Capture.Panics += cs.Panics
	}
	return s
}

// Close stops capturing and sends what is queued, until ctx ends (what is
// left is then counted as failed). Serve's http.Server is the caller's to
// shut down first.
func (g *Gateway) Close(ctx context.Context) error {
	var errs []error
	for _, u := range g.upstreams {
		if err := u.capture.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("upstream %s: %w", u.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Start listens on Config.Listen (127.0.0.1:8080 when empty) and serves
// in the background; Shutdown stops it. It returns the address listened on.
func (g *Gateway) Start() (net.Addr, error) {
	addr := g.cfg.Listen
	if addr == "" {
		addr = DefaultListen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.hs, g.addr = g.Server(), ln.Addr()
	g.done = make(chan error, 1)
	go func() {
		err := g.hs.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		g.done <- err
	}()
	return ln.Addr(), nil
}

// Addr is the address Start listens on (nil before Start).
func (g *Gateway) Addr() net.Addr { return g.addr }

// DefaultListen is the gateway's address when neither config nor flag
// gives one.
const DefaultListen = "127.0.0.1:8080"

// Done is closed with Serve's error when the server started by Start
// stops on its own.
func (g *Gateway) Done() <-chan error { return g.done }

// Shutdown stops the server started by Start, letting calls in progress
// finish, then closes the gateway (sending what is queued), both within
// ctx.
func (g *Gateway) Shutdown(ctx context.Context) error {
	var err error
	if g.hs != nil {
		err = g.hs.Shutdown(ctx)
	}
	return errors.Join(err, g.Close(ctx))
}

// Server returns an http.Server for g with the configured client-side
// timeouts, listening on Config.Listen.
func (g *Gateway) Server() *http.Server {
	t := g.cfg.Timeouts
	return &http.Server{
		Addr:              g.cfg.Listen,
		Handler:           g,
		ReadHeaderTimeout: t.ReadHeader.or(10 * time.Second),
		ReadTimeout:       t.Read.or(0),
		WriteTimeout:      t.Write.or(0),
		IdleTimeout:       t.Idle.or(2 * time.Minute),
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}
