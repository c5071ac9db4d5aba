package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/breaker"
)

// RedisOptions configure a Redis backend.
type RedisOptions struct {
	// Prefix starts every key apimeter writes. Empty means "apimeter:".
	Prefix string
	// ExpiredRetention is how long an expired alias is still answered
	// (Redis then drops it). Zero means DefaultExpiredRetention.
	ExpiredRetention time.Duration
	// Timeout bounds the alias lookups and usage updates of ingest. Past
	// it the batch is refused (503, the sender retries), and after 5
	// failures in a row Redis is not asked for 5 s, so that a hung Redis
	// answers at once rather than holding every batch. Zero means
	// DefaultRedisTimeout; negative means no deadline.
	Timeout time.Duration
	// Logger gets one line per change of the circuit's state.
	Logger *slog.Logger
}

// DefaultRedisTimeout is RedisOptions.Timeout's default: a pipelined round
// trip of a 500-event batch takes about a millisecond on a healthy Redis.
const DefaultRedisTimeout = 250 * time.Millisecond

// Redis keeps the alias table and the usage counters in Redis, so that
// several collectors and gateways share them. Every batch is one pipelined
// round trip. Layout (P is the prefix):
//
//	P alias:{org}:{env}:{key_hash}        hash u (user), c (company), x (expiry, unix ms), t (created, unix ms)
//	P alias_user:{org}:{env}:{user}       set of key hashes
//	P usage:{org}:{env}:{period}:{dim}:calls|errors|bytes   hash id -> count
//
// Keys are held only as their SHA-256.
type Redis struct {
	c         redis.UniversalClient
	prefix    string
	retention time.Duration
	guard     *breaker.Breaker // of ingest's calls
}

// NewRedis returns a Redis backend on client c (which it does not close).
func NewRedis(c redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = "apimeter:"
	}
	if opts.ExpiredRetention == 0 {
		opts.ExpiredRetention = DefaultExpiredRetention
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	// Detached calls: a client whose socket reads ignore the context
	// still lets ingest go on at the deadline.
	guard := breaker.New(breaker.Config{Name: "redis (aliases and usage)", Timeout: opts.Timeout, Detach: true, Logger: opts.Logger})
	return &Redis{c: c, prefix: opts.Prefix, retention: opts.ExpiredRetention, guard: guard}
}

// CircuitOpen reports whether ingest's calls are skipped now, Redis having
// failed repeatedly.
func (r *Redis) CircuitOpen() bool { return r.guard.Open() }

func (r *Redis) aliasKey(org, env, hash string) string {
	return r.prefix + "alias:" + org + ":" + env + ":" + hash
}

func (r *Redis) userKey(org, env, user string) string {
	return r.prefix + "alias_user:" + org + ":" + env + ":" + user
}

func (r *Redis) usageKey(org, env, period string, dim Dimension, metric string) string {
	return r.prefix + "usage:" + org + ":" + env + ":" + period + ":" + string(dim) + ":" + metric
}

func msString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func parseMs(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// PutAlias implements Aliases.
func (r *Redis) PutAlias(ctx context.Context, a Alias) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	key := r.aliasKey(a.Org, a.Env, a.KeyHash)
	old, err := r.c.HGet(ctx, key, "u").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis: read alias: %w", err)
	}
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HSet(ctx, key, "u", a.UserID, "c", a.CompanyID, "x", msString(a.ExpiresAt), "t", msString(a.CreatedAt))
		if !a.ExpiresAt.IsZero() {
			p.PExpireAt(ctx, key, a.ExpiresAt.Add(r.retention))
		}
		if old != "" && old != a.UserID {
			p.SRem(ctx, r.userKey(a.Org, a.Env, old), a.KeyHash)
		}
		p.SAdd(ctx, r.userKey(a.Org, a.Env, a.UserID), a.KeyHash)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: store alias: %w", err)
	}
	return nil
}

func aliasFrom(org, env, hash string, vals []any) (Alias, bool) {
	if len(vals) < 4 {
		return Alias{}, false
	}
	u, _ := vals[0].(string)
	if u == "" {
		return Alias{}, false
	}
	c, _ := vals[1].(string)
	x, _ := vals[2].(string)
	t, _ := vals[3].(string)
	return Alias{Org: org, Env: env, KeyHash: hash, UserID: u, CompanyID: c, ExpiresAt: parseMs(x), CreatedAt: parseMs(t)}, true
}

// GetAlias implements Aliases.
func (r *Redis) GetAlias(ctx context.Context, org, env, keyHash string) (Alias, error) {
	vals, err := r.c.HMGet(ctx, r.aliasKey(org, env, keyHash), "u", "c", "x", "t").Result()
	if err != nil {
		return Alias{}, fmt.Errorf("redis: read alias: %w", err)
	}
	a, ok := aliasFrom(org, env, keyHash, vals)
	if !ok {
		return Alias{}, apimeter.ErrNotFound
	}
	return a, nil
}

// DeleteAlias implements Aliases.
func (r *Redis) DeleteAlias(ctx context.Context, org, env, keyHash string) error {
	a, err := r.GetAlias(ctx, org, env, keyHash)
	if err != nil {
		return err
	}
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.aliasKey(org, env, keyHash))
		p.SRem(ctx, r.userKey(org, env, a.UserID), keyHash)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: delete alias: %w", err)
	}
	return nil
}

// UserAliases implements Aliases. Entries Redis has expired are dropped
// from the user's set as they are found.
func (r *Redis) UserAliases(ctx context.Context, org, env, userID string) ([]Alias, error) {
	hashes, err := r.c.SMembers(ctx, r.userKey(org, env, userID)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: list aliases: %w", err)
	}
	refs := make([]AliasRef, len(hashes))
	for i, h := range hashes {
		refs[i] = AliasRef{org, env, h}
	}
	found := make([]Alias, len(refs))
	if err := r.LookupAliases(ctx, refs, found); err != nil {
		return nil, err
	}
	var out []Alias
	var gone []any
	for i, a := range found {
		switch {
		case a.UserID == userID:
			out = append(out, a)
		case a.UserID == "":
			gone = append(gone, hashes[i])
		}
	}
	if len(gone) > 0 {
		r.c.SRem(ctx, r.userKey(org, env, userID), gone...)
	}
	sortAliases(out)
	return out, nil
}

// LookupAliases implements Aliases in one pipelined round trip.
func (r *Redis) LookupAliases(ctx context.Context, refs []AliasRef, out []Alias) error {
	if len(out) != len(refs) {
		return errors.New("lookup aliases: out and refs differ in length")
	}
	if len(refs) == 0 {
		return nil
	}
	// The call may outlive the deadline: it writes only cmds, read here
	// once it returned in time.
	cmds := make([]*redis.SliceCmd, len(refs))
	err := r.guard.Do(ctx, func(ctx context.Context) error {
		p := r.c.Pipeline()
		for i, ref := range refs {
			cmds[i] = p.HMGet(ctx, r.aliasKey(ref.Org, ref.Env, ref.KeyHash), "u", "c", "x", "t")
		}
		_, err := p.Exec(ctx)
		if errors.Is(err, redis.Nil) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("redis: look up aliases: %w", err)
	}
	for i, cmd := range cmds {
		a, ok := aliasFrom(refs[i].Org, refs[i].Env, refs[i].KeyHash, cmd.Val())
		if !ok {
			a = Alias{}
		}
		out[i] = a
	}
	return nil
}

// AddUsage implements Counters in one pipelined round trip.
func (r *Redis) AddUsage(ctx context.Context, deltas map[CounterKey]Counts) error {
	if len(deltas) == 0 {
		return nil
	}
	p := r.c.Pipeline()
	for k, d := range deltas {
		p.HIncrBy(ctx, r.usageKey(k.Org, k.Env, k.Period, k.Dim, "calls"), k.ID, d.Calls)
		if d.Errors != 0 {
			p.HIncrBy(ctx, r.usageKey(k.Org, k.Env, k.Period, k.Dim, "errors"), k.ID, d.Errors)
		}
		if d.Bytes != 0 {
			p.HIncrBy(ctx, r.usageKey(k.Org, k.Env, k.Period, k.Dim, "bytes"), k.ID, d.Bytes)
		}
	}
	err := r.guard.Do(ctx, func(ctx context.Context) error {
		_, err := p.Exec(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("redis: add usage: %w", err)
	}
	return nil
}

// Usage implements Counters.
func (r *Redis) Usage(ctx context.Context, org, env, period string, dim Dimension) ([]UsageRow, error) {
	p := r.c.Pipeline()
	calls := p.HGetAll(ctx, r.usageKey(org, env, period, dim, "calls"))
	errs := p.HGetAll(ctx, r.usageKey(org, env, period, dim, "errors"))
	bytes := p.HGetAll(ctx, r.usageKey(org, env, period, dim, "bytes"))
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redis: read usage: %w", err)
	}
	out := make([]UsageRow, 0, len(calls.Val()))
	for id, v := range calls.Val() {
		row := UsageRow{ID: id}
		row.Calls, _ = strconv.ParseInt(v, 10, 64)
		row.Errors, _ = strconv.ParseInt(errs.Val()[id], 10, 64)
		row.Bytes, _ = strconv.ParseInt(bytes.Val()[id], 10, 64)
		out = append(out, row)
	}
	return out, nil
}

// ReplaceUsage overwrites every counter of the periods present in counts
// with counts (for a one-collector deployment rebuilding its counters from
// the events table; see RebuildCounters). It runs in one transaction.
func (r *Redis) ReplaceUsage(ctx context.Context, counts map[CounterKey]Counts) error {
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		cleared := map[counterScope]bool{}
		for k := range counts {
			sc := counterScope{k.Org, k.Env, k.Period, k.Dim}
			if !cleared[sc] {
				cleared[sc] = true
				for _, m := range []string{"calls", "errors", "bytes"} {
					p.Del(ctx, r.usageKey(k.Org, k.Env, k.Period, k.Dim, m))
				}
			}
		}
		for k, d := range counts {
			p.HSet(ctx, r.usageKey(k.Org, k.Env, k.Period, k.Dim, "calls"), k.ID, d.Calls)
			p.HSet(ctx, r.usageKey(k.Org, k.Env, k.Period, k.Dim, "errors"), k.ID, d.Errors)
			p.HSet(ctx, r.usageKey(k.Org, k.Env, k.Period, k.Dim, "bytes"), k.ID, d.Bytes)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: replace usage: %w", err)
	}
	return nil
}

// Counter implements Counters in one pipelined round trip.
func (r *Redis) Counter(ctx context.Context, k CounterKey) (Counts, error) {
	p := r.c.Pipeline()
	cmds := make([]*redis.StringCmd, 3)
	for i, m := range []string{"calls", "errors", "bytes"} {
		cmds[i] = p.HGet(ctx, r.usageKey(k.Org, k.Env, k.Period, k.Dim, m), k.ID)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Counts{}, fmt.Errorf("redis: read counter: %w", err)
	}
	var c Counts
	for i, dst := range []*int64{&c.Calls, &c.Errors, &c.Bytes} {
		if v, err := cmds[i].Int64(); err == nil {
			*dst = v
		}
	}
	return c, nil
}
