package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/workload"
)

// GuideUsers are the users of the counting guide, with their companies;
// they make most of the traffic.
var GuideUsers = []User{{"513", "abcdef"}, {"1234", "abcdef"}, {"2560", "contoso"}}

// User is a caller and the company it belongs to.
type User struct{ ID, Company string }

var companies = []string{"contoso", "fabrikam", "northwind", "tailspin", "wingtip", "litware", "adatum", "proseware"}

// Background returns n other users spread over the companies.
func Background(n int) []User {
	out := make([]User, n)
	for i := range out {
		out[i] = User{ID: strconv.Itoa(8000 + i*7), Company: companies[i%len(companies)]}
	}
	return out
}

// Traffic calls a SampleAPI as its users would: the guide's three users
// often, a background of others now and then, with a few calls that carry
// no token or a forged one.
type Traffic struct {
	BaseURL string
	Secret  []byte
	// Pace sets the rate at each moment: the history's at that time of
	// day. Zero means 4 calls a second.
	Pace       Pace
	Background []User
	Client     *http.Client
}

// Run calls the API until ctx ends.
func (t *Traffic) Run(ctx context.Context) {
	client := t.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	timer := time.NewTimer(t.Interval(time.Now()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(t.Interval(time.Now()))
		u := GuideUsers[rand.IntN(len(GuideUsers))]
		if len(t.Background) > 0 && rand.IntN(3) == 0 {
			u = t.Background[rand.IntN(len(t.Background))]
		}
		go t.call(ctx, client, u)
	}
}

// Interval is the time between two calls at now: 1/Pace's rate at now.
func (t *Traffic) Interval(now time.Time) time.Duration {
	rate := t.Pace.PerSecond(now)
	if rate <= 0 {
		rate = 4
	}
	return time.Duration(float64(time.Second) / rate)
}

// Call makes one call to the sample API as user and returns its status.
func (t *Traffic) Call(ctx context.Context, client *http.Client, u User, method, path, token string) (int, error) {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(fmt.Sprintf(`{"text":"hello from %s","qty":%d}`, u.ID, 1+rand.IntN(9)))
	}
	req, err := http.NewRequestWithContext(ctx, method, t.BaseURL+path, body)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", []string{"curl/8.5.0", "python-requests/2.32.3", "okhttp/4.12.0", "Go-http-client/1.1"}[rand.IntN(4)])
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// The shares of live calls (percent) that carry no token, and a forged one.
const (
	NoTokenPercent = 2
	ForgedPercent  = 1
)

func (t *Traffic) call(ctx context.Context, client *http.Client, u User) {
	method, path := http.MethodGet, "/accounts/"+u.Company+"/message"
	switch n := rand.IntN(20); {
	case n < 9:
	case n < 11:
		method = http.MethodPost
	case n < 13:
		path = "/accounts/" + u.Company
	case n < 16:
		path = "/orders/" + strconv.Itoa(1000+rand.IntN(9000))
	case n < 17:
		method, path = http.MethodPost, "/orders"
	default:
		path = "/search?q=widget&page=" + strconv.Itoa(1+rand.IntN(5))
	}
	token := Token(t.Secret, u)
	switch n := rand.IntN(100); {
	case n < NoTokenPercent:
		token = "" // forgot the token: a 401 no one is identified for
	case n < NoTokenPercent+ForgedPercent:
		token = Token([]byte("not the secret"), u) // forged: 401, and apimeter verifies too
	}
	t.Call(ctx, client, u, method, path, token)
}

// Backfill sends n generated calls spread over the span before now, more
// by day than by night (Pace's curve), each standing for weight calls, through
// post, in batches of 1000 from `workers` goroutines: history for the
// charts. The generator's users are mixed with the background users so
// that segmentations have a tail.
func Backfill(ctx context.Context, n, workers int, span time.Duration, weight int64, background []User, post func(context.Context, []moesif.Event) error) error {
	workers = max(1, workers)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	seed := uint64(time.Now().UnixNano())
	for w := range workers {
		share := n / workers
		if w == 0 {
			share += n % workers
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := workload.New(seed+uint64(w), span)
			rnd := rand.New(rand.NewPCG(seed+uint64(w), 7))
			for sent := 0; sent < share && ctx.Err() == nil; {
				batch := gen.Batch(min(1000, share-sent))
				for i := range batch {
					retime(&batch[i], at(gen.Start, span, rnd.Float64))
					if weight > 1 {
						batch[i].Weight = json.RawMessage(strconv.FormatInt(weight, 10))
					}
					if len(background) > 0 && rnd.IntN(4) == 0 {
						setUser(&batch[i], background[rnd.IntN(len(background))])
					}
				}
				if err := post(ctx, batch); err != nil {
					cancel(err)
					return
				}
				sent += len(batch)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return fmt.Errorf("backfill: %w", err)
	}
	return nil
}

// retime moves a generated call to request time t, its response with it.
func retime(e *moesif.Event, t time.Time) {
	req, err := moesif.ParseTime(e.Request.Time)
	if err != nil {
		return
	}
	d := t.Sub(req)
	e.Request.Time = t.UTC().Format(timeLayout)
	if e.Response != nil && e.Response.Time != "" {
		if res, err := moesif.ParseTime(e.Response.Time); err == nil {
			e.Response.Time = res.Add(d).UTC().Format(timeLayout)
		}
	}
}

const timeLayout = "2006-01-02T15:04:05.000Z"

func setUser(e *moesif.Event, u User) {
	e.UserID, e.CompanyID = u.ID, u.Company
	e.SessionToken = "Bearer " + workload.JWT(u.ID)
	for i, h := range e.Request.Headers {
		switch h.Name {
		case "Authorization":
			e.Request.Headers[i].Value = "Bearer " + workload.JWT(u.ID)
		case "X-Api-Key":
			e.Request.Headers[i].Value = workload.APIKey(u.ID)
		}
	}
	if rest, ok := strings.CutPrefix(e.Request.URI, "https://accounts.api.example.com/accounts/"); ok {
		_, tail, _ := strings.Cut(rest, "/")
		if tail != "" {
			tail = "/" + tail
		}
		e.Request.URI = "https://accounts.api.example.com/accounts/" + u.Company + tail
	}
}
