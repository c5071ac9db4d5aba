// Package dataset generates a realistic quarter of API traffic for
// benchmarks (`apimeter bench dataset`): Zipf-distributed users, each in a
// company and with one to three API keys, 8 APIs with 40 routes of their
// own call shares, error rates and latency medians, a diurnal and weekly
// pattern, status mixes and long-tailed whole-millisecond latencies. The
// same Config and seed give the same events.
package dataset

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/apimeter/apimeter"
)

// Config sizes a dataset. Zero fields take the defaults of Normalize.
type Config struct {
	Events    int64
	Org, Env  string
	Users     int // distinct users (Zipf): default 50,000
	Companies int // default 2,000
	// End is the end of the quarter (exclusive); Span its length.
	End  time.Time
	Span time.Duration
	Seed uint64
}

// Normalize fills the defaults.
func (c *Config) Normalize() {
	if c.Org == "" {
		c.Org = "demo"
	}
	if c.Env == "" {
		c.Env = "prod"
	}
	if c.Users <= 0 {
		c.Users = 50000
	}
	if c.Companies <= 0 {
		c.Companies = 2000
	}
	if c.Span <= 0 {
		c.Span = 90 * 24 * time.Hour
	}
	if c.End.IsZero() {
		c.End = time.Now().UTC().Truncate(time.Hour)
	}
}

// Start is the first instant of the quarter.
func (c Config) Start() time.Time { return c.End.Add(-c.Span) }

type route struct {
	api, method, template string
	share                 float64 // cumulative
	errRate               float64
	medianMs              float64
}

// APIs and their routes: 8 APIs of 5 routes each.
var apis = []string{"accounts", "orders", "payments", "search", "catalog", "shipping", "auth", "reports"}

var templates = []struct{ method, path string }{
	{"GET", "/{id}"}, {"GET", ""}, {"POST", "/{id}/actions"}, {"PUT", "/{id}/settings"}, {"DELETE", "/{id}/items/{item}"},
}

func buildRoutes(r *rand.Rand) []route {
	var out []route
	total := 0.0
	for ai, a := range apis {
		for ti, t := range templates {
			// API popularity falls off with its index, GETs dominate.
			share := 1 / float64(ai+1) * []float64{5, 3, 1.5, 0.7, 0.3}[ti]
			total += share
			out = append(out, route{
				api: a, method: t.method, template: "/" + a + t.path,
				share: total, errRate: 0.005 + 0.08*r.Float64()*r.Float64(),
				medianMs: 8 + 250*r.Float64()*r.Float64(),
			})
		}
	}
	for i := range out {
		out[i].share /= total
	}
	return out
}

// Generator makes the events of a Config in request-time order. Not safe
// for concurrent use.
type Generator struct {
	cfg    Config
	r      *rand.Rand
	zipf   *rand.Zipf
	routes []route
	// cum is the cumulative share of the quarter's events up to the end of
	// each minute (diurnal and weekly pattern).
	cum   []float64
	start time.Time
	next  int64
	// users caches each user's strings, built on first use.
	users []*user
}

type user struct {
	id, company, ip, agent string
	keys                   []string
}

func (g *Generator) user(u int) *user {
	if x := g.users[u]; x != nil {
		return x
	}
	company := (uint64(u)*2654435761 + 17) % uint64(g.cfg.Companies)
	x := &user{
		id: "u" + strconv.Itoa(u), company: "c" + strconv.FormatUint(company, 10),
		ip:    "10." + strconv.Itoa(u>>16&255) + "." + strconv.Itoa(u>>8&255) + "." + strconv.Itoa(u&255),
		agent: "client/1." + strconv.Itoa(u%7),
	}
	for k := range 1 + u%3 {
		x.keys = append(x.keys, "k"+strconv.Itoa(u*3+k))
	}
	g.users[u] = x
	return x
}

// New returns a generator of cfg's events.
func New(cfg Config) *Generator {
	cfg.Normalize()
	r := rand.New(rand.NewPCG(cfg.Seed, 0x29))
	g := &Generator{cfg: cfg, r: r, start: cfg.Start(), routes: buildRoutes(r), users: make([]*user, cfg.Users)}
	// A few heavy users, a long tail: s = 1.1 over the user ids.
	g.zipf = rand.NewZipf(r, 1.1, 8, uint64(cfg.Users-1))
	minutes := int(cfg.Span / time.Minute)
	g.cum = make([]float64, minutes)
	total := 0.0
	for m := range minutes {
		t := g.start.Add(time.Duration(m) * time.Minute)
		h := float64(t.Hour()) + float64(t.Minute())/60
		// Busiest at 15:00 UTC, quietest at 03:00; weekends at 55 %.
		w := 1 + 0.7*math.Sin(2*math.Pi*(h-9)/24)
		if wd := t.Weekday(); wd == time.Saturday || wd == time.Sunday {
			w *= 0.55
		}
		total += w
		g.cum[m] = total
	}
	for m := range g.cum {
		g.cum[m] /= total
	}
	return g
}

// Config is the generator's configuration, defaults filled.
func (g *Generator) Config() Config { return g.cfg }

var statusErrors = []int{400, 401, 403, 404, 404, 404, 409, 422, 429, 429, 500, 500, 502, 503, 504}

// Fill overwrites dst with the next events and returns how many it wrote
// (fewer than len(dst) at the end).
func (g *Generator) Fill(dst []apimeter.Event) int {
	n := 0
	minute := -1
	for n < len(dst) && g.next < g.cfg.Events {
		// The event's minute: where its rank falls in the cumulative
		// shares; searched once, then walked forward (ranks ascend).
		q := (float64(g.next) + 0.5) / float64(g.cfg.Events)
		if minute < 0 {
			minute = searchMinute(g.cum, q)
		}
		for minute < len(g.cum)-1 && g.cum[minute] < q {
			minute++
		}
		// Within the minute, in proportion, so that times ascend.
		lo := 0.0
		if minute > 0 {
			lo = g.cum[minute-1]
		}
		frac := min(max((q-lo)/(g.cum[minute]-lo), 0), 1)
		ts := g.start.Add(time.Duration(minute)*time.Minute + time.Duration(frac*float64(time.Minute-1)))
		g.fillOne(&dst[n], ts)
		n++
		g.next++
	}
	return n
}

func searchMinute(cum []float64, q float64) int {
	lo, hi := 0, len(cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if cum[mid] < q {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

func (g *Generator) fillOne(e *apimeter.Event, ts time.Time) {
	r := g.r
	u := int(g.zipf.Uint64())
	// Users are spread over companies by a fixed hash, so heavy users are
	// in different companies; keys are per user.
	us := g.user(u)
	key := us.keys[r.IntN(len(us.keys))]
	x := r.Float64()
	ri := 0
	for ri < len(g.routes)-1 && g.routes[ri].share < x {
		ri++
	}
	rt := g.routes[ri]
	status := okStatus(rt.method)
	if r.Float64() < rt.errRate {
		status = statusErrors[r.IntN(len(statusErrors))]
	}
	// Log-normal latency around the route's median, whole milliseconds;
	// server errors slower, client errors faster.
	lat := rt.medianMs * math.Exp(0.8*r.NormFloat64())
	switch {
	case status >= 500:
		lat *= 3
	case status >= 400:
		lat *= 0.3
	}
	lat = math.Max(1, math.Round(lat))
	id := strconv.FormatInt(g.next, 36)
	path := strings.Replace(strings.Replace(rt.template, "{id}", strconv.Itoa(r.IntN(100000)), 1), "{item}", strconv.Itoa(r.IntN(50)), 1)
	*e = apimeter.Event{
		ID: "ds" + id, Org: g.cfg.Org, Env: g.cfg.Env, Direction: apimeter.Incoming,
		APIName: rt.api, RequestTime: ts, ResponseTime: ts.Add(time.Duration(lat) * time.Millisecond),
		Method: rt.method, URI: "https://api.example.com" + path, Path: path, Route: rt.template,
		ClientIP: us.ip, UserAgent: us.agent,
		RequestSize: int64(r.IntN(2000)), Status: status, ResponseSize: int64(100 + r.IntN(20000)),
		LatencyMs: lat, TargetLatencyMs: math.Max(1, math.Round(lat*0.8)),
		UserID: us.id, CompanyID: us.company, APIKeyID: key,
		Weight: 1,
	}
}

// okStatus is the status of a successful call of method.
func okStatus(method string) int {
	switch method {
	case "POST":
		return 201
	case "DELETE":
		return 204
	}
	return 200
}
