package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/detail"
)

// Columns are rows of the events table held column by column, the form
// PrepareBatch takes with one call per column instead of one per value.
// Reused from INSERT to INSERT.
type Columns struct {
	n                                               int
	id, org, env                                    []string
	ingested, ts                                    []time.Time
	tsUS                                            []int64
	api, method, uri, path, route                   []string
	status                                          []int32
	latency                                         []float64
	target                                          []*float64
	reqSize, respSize                               []*int64
	user, company, apiKey, clientIP, agent, targetU []string
	weight                                          []int64
	apiVersion, detail                              []string
	buf                                             []byte
}

// Reset empties c, keeping its memory.
func (c *Columns) Reset() {
	c.n = 0
	c.id, c.org, c.env = c.id[:0], c.org[:0], c.env[:0]
	c.ingested, c.ts, c.tsUS = c.ingested[:0], c.ts[:0], c.tsUS[:0]
	c.api, c.method, c.uri, c.path, c.route = c.api[:0], c.method[:0], c.uri[:0], c.path[:0], c.route[:0]
	c.status, c.latency, c.target = c.status[:0], c.latency[:0], c.target[:0]
	c.reqSize, c.respSize = c.reqSize[:0], c.respSize[:0]
	c.user, c.company, c.apiKey, c.clientIP, c.agent, c.targetU = c.user[:0], c.company[:0], c.apiKey[:0], c.clientIP[:0], c.agent[:0], c.targetU[:0]
	c.weight, c.apiVersion, c.detail = c.weight[:0], c.apiVersion[:0], c.detail[:0]
}

func size(n int64) *int64 {
	if n < 0 {
		return nil
	}
	return &n
}

// Add appends e as a row ingested at ingested.
func (c *Columns) Add(e *apimeter.Event, ingested time.Time) {
	c.buf = detail.Append(c.buf[:0], e)
	c.add(e, string(c.buf), ingested)
}

// Len is the number of rows.
func (c *Columns) Len() int { return c.n }

// add appends e as a row; doc is its detail document (package detail).
func (c *Columns) add(e *apimeter.Event, doc string, ingested time.Time) {
	c.n++
	rt := e.RequestTime.UTC()
	var target *float64
	if e.TargetLatencyMs > 0 {
		t := e.TargetLatencyMs
		target = &t
	}
	c.id, c.org, c.env = append(c.id, e.ID), append(c.org, e.Org), append(c.env, e.Env)
	c.ingested, c.ts, c.tsUS = append(c.ingested, ingested), append(c.ts, rt.Truncate(time.Second)), append(c.tsUS, rt.UnixMicro())
	c.api, c.method, c.uri, c.path, c.route = append(c.api, e.APIName), append(c.method, e.Method), append(c.uri, e.URI), append(c.path, e.Path), append(c.route, e.Route)
	c.status, c.latency, c.target = append(c.status, int32(e.Status)), append(c.latency, e.LatencyMs), append(c.target, target)
	c.reqSize, c.respSize = append(c.reqSize, size(e.RequestSize)), append(c.respSize, size(e.ResponseSize))
	c.user, c.company, c.apiKey = append(c.user, e.UserID), append(c.company, e.CompanyID), append(c.apiKey, e.APIKeyID)
	c.clientIP, c.agent, c.targetU = append(c.clientIP, e.ClientIP), append(c.agent, e.UserAgent), append(c.targetU, e.TargetURL)
	c.weight, c.apiVersion, c.detail = append(c.weight, e.Weight), append(c.apiVersion, e.APIVersion), append(c.detail, doc)
}

// InsertEvents is the INSERT every events batch is prepared with.
const InsertEvents = "INSERT INTO events (" + eventColumns + ")"

// SendColumns inserts c's rows in one INSERT prepared with PrepareBatch.
func SendColumns(ctx context.Context, conn driver.Conn, c *Columns) error {
	b, err := conn.PrepareBatch(ctx, InsertEvents)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer b.Abort()
	for i, v := range []any{c.id, c.org, c.env, c.ingested, c.ts, c.tsUS, c.api, c.method, c.uri, c.path, c.route,
		c.status, c.latency, c.target, c.reqSize, c.respSize,
		c.user, c.company, c.apiKey, c.clientIP, c.agent, c.targetU, c.weight, c.apiVersion, c.detail} {
		if err := b.Column(i).Append(v); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return b.Send()
}
