package dataset

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/detail"
)

// DuckDB generates the same quarter inside DuckDB: one INSERT ... SELECT
// that DuckDB runs vectorized on all cores, which is the fastest way into
// its events table (the appender costs a call per value from Go). The
// model is the Generator's: the same routes with their shares, error
// rates and medians, the same per-minute shares of the quarter (so the
// same number of events in each minute), the same users with their
// companies, keys, addresses and agents, and Zipf's law over users with
// the same exponent. The random draws are hashes of the event's rank and
// the seed instead of the Generator's stream, so the events are not the
// Fill's one by one; the same Config gives the same rows.
//
// Setup are statements that create and fill a small table of the events
// per minute (temporary, dropped by Cleanup); Insert writes the events. The events
// are stored as the collector stores them: ids unique within the org and
// env, the detail document the store's encoder writes, and ingested_at the
// response time (the quarter was ingested as it happened, so a store
// opened on it keeps the last dedupe horizon's ids as after real traffic).
type DuckDB struct {
	Setup []string
	// Insert writes the events of the minutes [$3, $4) of the quarter
	// into org $1, env $2; Chunks split the quarter into runs of minutes
	// of about ChunkEvents events, for a progress line and transactions
	// of bounded size.
	Insert  string
	Chunks  []Chunk
	Cleanup []string
}

// Chunk is a run of minutes [From, To) holding Events events.
type Chunk struct {
	From, To int
	Events   int64
}

// ChunkEvents is about the events of one Chunk: a multiple of DuckDB's
// row group size (122,880 rows), so that each INSERT writes whole
// compressed row groups to the file rather than to the write-ahead log.
const ChunkEvents = 8 * 122880

// DuckDB returns the statements that write g's configuration's events.
func (g *Generator) DuckDB() DuckDB {
	cfg := g.cfg
	var out DuckDB
	out.Setup = append(out.Setup, `CREATE OR REPLACE TEMP TABLE ds_minutes (m INTEGER, first BIGINT, n INTEGER)`)
	// Minutes: the events of ranks [first, first+n) fall in minute m, as
	// Fill places rank i at quantile (i+0.5)/Events of the cumulative
	// shares.
	var sb strings.Builder
	prev := int64(0)
	rows := 0
	flush := func() {
		if rows > 0 {
			out.Setup = append(out.Setup, "INSERT INTO ds_minutes VALUES "+strings.TrimSuffix(sb.String(), ","))
		}
		sb.Reset()
		rows = 0
	}
	for m, c := range g.cum {
		// Ranks i with (i+0.5)/N <= cum[m]: i <= cum[m]*N - 0.5.
		upto := int64(math.Floor(c*float64(cfg.Events) + 0.5))
		if m == len(g.cum)-1 {
			upto = cfg.Events
		}
		upto = min(max(upto, prev), cfg.Events)
		if n := upto - prev; n > 0 {
			fmt.Fprintf(&sb, "(%d,%d,%d),", m, prev, n)
			rows++
			if k := len(out.Chunks); k == 0 || out.Chunks[k-1].Events >= ChunkEvents {
				out.Chunks = append(out.Chunks, Chunk{From: m})
			}
			c := &out.Chunks[len(out.Chunks)-1]
			c.To, c.Events = m+1, c.Events+n
		}
		prev = upto
		if rows == 4096 {
			flush()
		}
	}
	flush()
	out.Cleanup = []string{"DROP TABLE IF EXISTS ds_minutes"}
	// The route: the first whose cumulative share reaches the draw, and
	// its attributes by index.
	var pick strings.Builder
	pick.WriteString("CASE")
	var apiL, methodL, tmplL, errL, medL, okL []string
	for i, rt := range g.routes {
		if i < len(g.routes)-1 {
			fmt.Fprintf(&pick, " WHEN u_route < %v THEN %d", rt.share, i+1)
		}
		apiL, methodL, tmplL = append(apiL, sqlString(rt.api)), append(methodL, sqlString(rt.method)), append(tmplL, sqlString(rt.template))
		errL, medL, okL = append(errL, fmt.Sprint(rt.errRate)), append(medL, fmt.Sprint(rt.medianMs)), append(okL, strconv.Itoa(okStatus(rt.method)))
	}
	fmt.Fprintf(&pick, " ELSE %d END", len(g.routes))
	list := func(l []string) string { return "[" + strings.Join(l, ",") + "]" }

	// u(k): the k-th uniform draw in [0, 1) of event i, a hash of one
	// integer (DuckDB's hash of several values combines them too weakly
	// for independent draws).
	seed := int64(splitmix(cfg.Seed) >> 2)
	u := func(k int) string {
		return fmt.Sprintf("(hash(xor(i * 64 + %d, %d)) / 18446744073709551616.0)", k, seed)
	}
	// Zipf over users 0..Users-1 with P(k) ∝ (v+k)^-s (rand.Zipf's law,
	// v = 8, s = 1.1), by inverting its continuous form.
	const s, v = 1.1, 8.0
	h0, h1 := math.Pow(v, 1-s), math.Pow(v+float64(cfg.Users), 1-s)
	user := fmt.Sprintf("least(%d, floor(pow(%v - %s * %v, %v) - %v))::BIGINT", cfg.Users-1, h0, u(0), h0-h1, 1/(1-s), v)
	// The detail document of every generated event: the encoder's output
	// for an incoming call without headers or bodies.
	doc := string(detail.Append(nil, &apimeter.Event{Direction: apimeter.Incoming}))
	statusErrs := make([]string, len(statusErrors))
	for i, st := range statusErrors {
		statusErrs[i] = strconv.Itoa(st)
	}
	start := cfg.Start().UnixMicro()
	out.Insert = fmt.Sprintf(`INSERT INTO events (`+eventColumnsForInsert+`)
WITH ranked AS (
  SELECT m, n, first + j AS i, j FROM (SELECT m, n, first, unnest(range(n)) AS j FROM ds_minutes WHERE m >= $3 AND m < $4)
), drawn AS (
  SELECT i, m, n, j, %[1]s AS uid, %[2]s AS u_route,
    %[3]s AS u_err, %[4]s AS u_code, %[5]s AS u_n1, %[6]s AS u_n2, %[7]s AS u_id, %[8]s AS u_item, %[9]s AS u_req, %[10]s AS u_resp, %[11]s AS u_key
  FROM ranked
), routed AS (
  SELECT *, %[17]s AS ri FROM drawn
), typed AS (
  SELECT *, %[18]s[ri] AS api, %[19]s[ri] AS method, %[20]s[ri] AS template, %[22]s[ri] AS median_ms,
    CASE WHEN u_err < %[21]s[ri] THEN [%[12]s][1 + floor(u_code * %[13]d)::INTEGER] ELSE %[23]s[ri] END AS status,
    make_timestamp(%[14]d + m::BIGINT * 60000000 + ((j * 2 + 1) * 59999999) // (2 * n)) AS ts
  FROM routed
), timed AS (
  SELECT *, greatest(1, round(median_ms * exp(0.8 * sqrt(-2 * ln(1 - u_n1)) * cos(2 * pi() * u_n2))
    * CASE WHEN status >= 500 THEN 3 WHEN status >= 400 THEN 0.3 ELSE 1 END)) AS lat,
    replace(replace(template, '{id}', floor(u_id * 100000)::BIGINT::VARCHAR), '{item}', floor(u_item * 50)::BIGINT::VARCHAR) AS p
  FROM typed
)
SELECT 'ds' || i, $1, $2, ts + to_milliseconds(lat::BIGINT), ts, api, method, 'https://api.example.com' || p, p, template,
  status, lat, greatest(1, round(lat * 0.8)), floor(u_req * 2000)::BIGINT, 100 + floor(u_resp * 20000)::BIGINT,
  'u' || uid, 'c' || ((uid * 2654435761 + 17) %% %[15]d), 'k' || (uid * 3 + floor(u_key * (1 + uid %% 3))::BIGINT),
  '10.' || ((uid >> 16) & 255) || '.' || ((uid >> 8) & 255) || '.' || (uid & 255), 'client/1.' || (uid %% 7), '', 1, %[16]s
FROM timed`,
		user, u(1), u(2), u(3), u(4), u(5), u(6), u(7), u(8), u(9), u(10),
		strings.Join(statusErrs, ","), len(statusErrors), start, cfg.Companies, sqlString(doc),
		pick.String(), list(apiL), list(methodL), list(tmplL), list(errL), list(medL), list(okL))
	return out
}

// eventColumnsForInsert are the events table's columns the generated
// INSERT fills, in its SELECT's order.
const eventColumnsForInsert = `id, org, env, ingested_at, ts, api_name, method, uri, path, route,
status, latency_ms, target_latency_ms, req_size, resp_size,
user_id, company_id, api_key_id, client_ip, user_agent, target_url, weight, detail`

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// splitmix is SplitMix64's output function: seeds 1, 2, ... give unrelated
// offsets.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// DuckDBFloor is the fastest load of rows like the quarter's into the
// events table that DuckDB does: one INSERT ... SELECT over range() with
// the same column types, string lengths and numbers of distinct values,
// computed by the cheapest expressions (no draws, no lookups). It binds
// $1 org and $2 env; `apimeter bench dataset --floor` times it against
// DuckDB.
func (g *Generator) DuckDBFloor() string {
	cfg := g.cfg
	doc := string(detail.Append(nil, &apimeter.Event{Direction: apimeter.Incoming}))
	apis := make([]string, len(g.routes))
	for i, rt := range g.routes {
		apis[i] = sqlString(rt.api)
	}
	step := cfg.Span.Microseconds() / max(cfg.Events, 1)
	return fmt.Sprintf(`INSERT INTO events (`+eventColumnsForInsert+`)
SELECT 'ds' || i, $1, $2, t, t, [%[1]s][1 + i %% %[2]d], 'GET', 'https://api.example.com/orders/' || (i * 7919 %% 100000), '/orders/' || (i * 7919 %% 100000), '/orders/{id}',
  200 + i %% 5, (i %% 500)::DOUBLE, (i %% 400)::DOUBLE, i %% 2000, 100 + i %% 20000,
  'u' || (i * 7 %% %[3]d), 'c' || (i %% %[4]d), 'k' || (i * 13 %% %[5]d), '10.0.' || (i %% 256) || '.1', 'client/1.' || (i %% 7), '', 1, %[6]s
FROM (SELECT i, make_timestamp(%[7]d + i * %[8]d) AS t FROM range(%[9]d) r(i))`,
		strings.Join(apis, ","), len(apis), cfg.Users, cfg.Companies, 3*cfg.Users, sqlString(doc), cfg.Start().UnixMicro(), step, cfg.Events)
}
