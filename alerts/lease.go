package alerts

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Leaser decides which process evaluates each rule, so that several
// processes on one store notify once. Hold takes or keeps the lease of
// each key for ttl and says, per key, whether this process holds it and
// whether it has just taken it (then the process reloads the rule's state,
// which another process may have changed).
type Leaser interface {
	Hold(ctx context.Context, keys []string, ttl time.Duration) (held, fresh []bool, err error)
	// Release gives up leases this process holds (at shutdown).
	Release(ctx context.Context, keys []string) error
}

// LocalLeaser is the Leaser of a process alone on its store (the embedded
// DuckDB store): it holds every lease.
type LocalLeaser struct {
	mu   sync.Mutex
	seen map[string]bool
}

// Hold implements Leaser.
func (l *LocalLeaser) Hold(_ context.Context, keys []string, _ time.Duration) ([]bool, []bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	held, fresh := make([]bool, len(keys)), make([]bool, len(keys))
	for i, k := range keys {
		held[i], fresh[i] = true, !l.seen[k]
		l.seen[k] = true
	}
	return held, fresh, nil
}

// Release implements Leaser.
func (l *LocalLeaser) Release(context.Context, []string) error { return nil }

// RedisLeaser holds leases as Redis keys: taken with SET NX PX when free,
// extended while this process (Owner) holds them, left to expire when it
// dies. Every process on a shared store must use the same Redis and
// Prefix.
type RedisLeaser struct {
	Client redis.UniversalClient
	Prefix string
	// Owner names this process; unique per process (e.g. a random id).
	Owner string
}

// hold returns 1 when the lease was taken now, 2 when extended, 0 when
// another process holds it.
var hold = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 2
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
`)

var release = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Hold implements Leaser: one round trip for all keys.
func (l *RedisLeaser) Hold(ctx context.Context, keys []string, ttl time.Duration) ([]bool, []bool, error) {
	held, fresh := make([]bool, len(keys)), make([]bool, len(keys))
	if len(keys) == 0 {
		return held, fresh, nil
	}
	pipe := l.Client.Pipeline()
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = hold.Eval(ctx, pipe, []string{l.Prefix + "alerts:lease:" + k}, l.Owner, ttl.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return held, fresh, fmt.Errorf("alerts: leases: %w", err)
	}
	for i, c := range cmds {
		n, err := c.Int()
		if err != nil {
			return held, fresh, fmt.Errorf("alerts: lease %s: %w", keys[i], err)
		}
		held[i], fresh[i] = n > 0, n == 1
	}
	return held, fresh, nil
}

// Release implements Leaser: this process's leases go to the next process
// that asks instead of expiring.
func (l *RedisLeaser) Release(ctx context.Context, keys []string) error {
	pipe := l.Client.Pipeline()
	for _, k := range keys {
		release.Eval(ctx, pipe, []string{l.Prefix + "alerts:lease:" + k}, l.Owner)
	}
	_, err := pipe.Exec(ctx)
	return err
}
