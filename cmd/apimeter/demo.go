package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"time"

	"github.com/alecthomas/kong"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/internal/progress"
	"github.com/apimeter/apimeter/moesif"
)

type demoCmd struct {
	Listen    string        `default:"127.0.0.1:7070" help:"Address of apimeter (collector, APIs, dashboard)."`
	APIListen string        `name:"api-listen" default:"127.0.0.1:7071" help:"Address of the sample API the demo traffic calls."`
	Data      string        `help:"Data directory to keep. Empty: a fresh directory for this run, removed at exit."`
	Org       string        `default:"demo" help:"Org of the demo traffic."`
	Env       string        `default:"prod" help:"Environment of the demo traffic."`
	Backfill  int           `default:"30000" help:"Generated calls of history, spread over --span before now."`
	Span      time.Duration `default:"720h" help:"How far back the backfill goes."`
	Rate      float64       `default:"1" help:"Live calls per second to the sample API on average over a day (busier by day than by night). The backfill is as busy: each of its calls stands for as many (weight) as it takes."`
	LogLevel  slog.Level    `default:"warn" help:"Log level of the server: debug, info, warn or error."`
}

// demoInfo is what a running demo tells its caller (the user, or a test).
type demoInfo struct {
	URL, APIURL, Data string
	Org, Env          string
	Secret            []byte // signs the sample API's JWTs
	Key               string // read key for the APIs, when the server has keys
	Dashboard         string // the dashboard's URL
	// The traffic: live calls per second on average, and the history's
	// events, span and weight (calls each event stands for).
	Rate     float64
	Backfill int
	Span     time.Duration
	Weight   int64
}

func (c *demoCmd) Run(ctx context.Context) error {
	return c.run(ctx, func(d demoInfo) { printDemo(os.Stdout, d) })
}

// demoServerFlags are serve's defaults (environment included), for the
// server the demo starts.
func demoServerFlags() (instance.Config, error) {
	var f struct{ instance.Config }
	p, err := kong.New(&f, kong.Name("apimeter-demo"))
	if err != nil {
		return instance.Config{}, err
	}
	if _, err := p.Parse(nil); err != nil {
		return instance.Config{}, err
	}
	return f.Config, nil
}

// run starts the server, the sample API and its traffic, calls ready, and
// serves until ctx ends; then it stops everything within a few seconds.
func (c *demoCmd) run(ctx context.Context, ready func(demoInfo)) (err error) {
	f, err := demoServerFlags()
	if err != nil {
		return err
	}
	f.Listen, f.LogLevel = c.Listen, c.LogLevel
	f.Data = c.Data
	if f.Data == "" {
		if f.Data, err = os.MkdirTemp("", "apimeter-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(f.Data)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	// The server verifies the sample API's JWTs as the API does, and takes
	// the company from the URL as the guide does, else from the token.
	f.JWTSecret = []string{string(secret)}
	f.CompanyRule = []string{"url:/accounts/{id}", "claim:tenant_id"}
	in, err := instance.Start(ctx, f)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := in.Close(); err == nil {
			err = cerr
		}
	}()
	if err := instance.StartDemoAlerts(ctx, in, f, c.Org, c.Env); err != nil {
		return err
	}
	appID := ""
	for _, a := range in.Apps.List() {
		if a.Org == c.Org && a.Env == c.Env {
			appID = a.ID
		}
	}
	if appID == "" {
		a, err := apps.Create(f.Data, c.Org, c.Env)
		if err != nil {
			return err
		}
		appID = a.ID
	}

	background := demo.Background(30)
	began := time.Now()
	bar := progress.Start(os.Stderr, "apimeter demo: backfill", "calls", int64(c.Backfill))
	post := func(ctx context.Context, batch []moesif.Event) error {
		_, err := demo.PostBatch(ctx, http.DefaultClient, in.URL, appID, batch)
		if err == nil {
			bar.Add(int64(len(batch)))
		}
		return err
	}
	// Profiles with metadata (name, email, plan) for the customer page.
	if err := demo.PostProfiles(ctx, http.DefaultClient, in.URL, appID, append(append([]demo.User{}, demo.GuideUsers...), background...)); err != nil {
		return fmt.Errorf("profiles: %w", err)
	}
	pace := demo.PaceOf(c.Rate)
	weight := pace.Weight(c.Backfill, c.Span)
	err = demo.Backfill(ctx, c.Backfill, runtime.GOMAXPROCS(0), c.Span, weight, background, post)
	bar.Finish()
	if err != nil {
		return err
	}
	if c.Backfill > 0 {
		fmt.Fprintf(os.Stderr, "apimeter demo: backfilled %d events (weight %d: %d calls) over %v in %v\n", c.Backfill, weight, int64(c.Backfill)*weight, c.Span, time.Since(began).Round(time.Millisecond))
	}

	// The sample API, captured by the middleware into this server.
	sink, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: in.URL, ApplicationID: appID, NoCompression: true, Logger: in.Log})
	if err != nil {
		return err
	}
	api := &demo.SampleAPI{Secret: secret}
	// The server's identity rules, applied in the middleware while the
	// token is readable: the server sees only its fingerprint, so its
	// claim:tenant_id rule could not place these calls.
	edge, err := f.Edge()
	if err != nil {
		return err
	}
	cp, err := capture.New(capture.Options{
		Sink: sink,
		IdentifyUser: func(r *http.Request, _ capture.Response) string {
			u, _ := edge.Subjects(r, time.Now())
			return u
		},
		IdentifyCompany: func(r *http.Request, _ capture.Response) string {
			_, c := edge.Subjects(r, time.Now())
			return c
		},
		Routes:        api.Routes(), // 401s of the JWT check get their route too
		LogBody:       true,
		JWTKey:        secret, // a forged token identifies no one here either
		FlushInterval: 250 * time.Millisecond,
		// One API per first path segment, as the backfill names them.
		Mask:   func(e *apimeter.Event) { e.APIName = demo.APIOf(e.Path) },
		Logger: in.Log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.APIListen)
	if err != nil {
		cp.Close(context.Background())
		return fmt.Errorf("sample API: %w", err)
	}
	apiSrv := &http.Server{Handler: cp.Middleware(api.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go apiSrv.Serve(ln)
	apiURL := "http://" + ln.Addr().String()

	trafficCtx, stopTraffic := context.WithCancel(ctx)
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		(&demo.Traffic{BaseURL: apiURL, Secret: secret, Pace: pace, Background: background}).Run(trafficCtx)
	}()
	defer func() {
		stopTraffic()
		<-trafficDone
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		apiSrv.Shutdown(sctx)
		cp.Close(sctx) // sends what the middleware still holds
	}()

	// A read key for the printed calls, and a one-time link that signs the
	// browser in with it.
	key, err := newDemoKey(f.Data, c.Org)
	if err != nil {
		return err
	}
	next := fmt.Sprintf("/ui/?org=%s&env=%s", url.QueryEscape(c.Org), url.QueryEscape(c.Env))
	ready(demoInfo{URL: in.URL, APIURL: apiURL, Data: f.Data, Org: c.Org, Env: c.Env, Secret: secret, Key: key.Key,
		Rate: c.Rate, Backfill: c.Backfill, Span: c.Span, Weight: weight,
		Dashboard: fmt.Sprintf("%s/signin?token=%s&next=%s", in.URL, url.QueryEscape(in.Auth.SignInToken(key.ID)), url.QueryEscape(next))})
	select {
	case <-ctx.Done():
		return nil
	case err := <-in.Done():
		return err
	}
}

func printDemo(w io.Writer, d demoInfo) {
	fmt.Fprintf(w, "apimeter demo: serving %s, data in %s\n", d.URL, d.Data)
	fmt.Fprintf(w, "sample API (JWT-protected, captured into apimeter): %s\n\n", d.APIURL)
	fmt.Fprintf(w, "Dashboard (the link signs you in once; later, sign in with the key below):\n  %s\n\n", d.Dashboard)
	fmt.Fprintf(w, "A read key of org %s, shown only now:\n  %s\n\n", d.Org, demoKey{Key: d.Key}.Env())
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	tr := url.QueryEscape(month.Format("01/02/2006 15:04") + "~" + now.Add(time.Minute).Format("01/02/2006 15:04"))
	base := fmt.Sprintf("%s/v1/o/%s/environments/%s", d.URL, d.Org, d.Env)
	fmt.Fprintf(w, "Metrics API (calls by user this month; p95 latency by route per day; errors by status):\n")
	fmt.Fprintf(w, "  curl -s %s '%s/stats/user_id?select=sum(message_count)&timeRange=%s&sortby=sum(message_count)'\n", curlAuth, base, tr)
	fmt.Fprintf(w, "  curl -s %s '%s/stats/route?select=p95(total_response_time)&timeUnit=day&timeRange=%s'\n", curlAuth, base, tr)
	fmt.Fprintf(w, "  curl -s %s '%s/stats/response_status_code?select=sum(is_error)&filter=(response_status_code%%20ge%%20400)&timeRange=%s'\n\n", curlAuth, base, tr)
	fmt.Fprintf(w, "Call the sample API as user 513:\n  curl -s %s/accounts/abcdef/message -H 'Authorization: Bearer %s'\n\n", d.APIURL, demo.Token(d.Secret, demo.GuideUsers[0]))
	fmt.Fprintf(w, "Traffic: %g calls a second on average, busier by day (15:00 UTC) than by night. The history before it is as busy:\n"+
		"%d stored events over %v, each standing for %d calls (the collector's weight, as a sampling SDK sends it).\n", d.Rate, d.Backfill, d.Span, d.Weight)
	fmt.Fprintf(w, "%s\n\n", demo.Faults())
	fmt.Fprintf(w, "Live traffic is running. Ctrl-C stops the demo.\n")
}
