package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCounter keeps quota counters in Redis, so that several gateways
// share them. Each call costs one round trip: a script that checks every
// window of the call and counts it in all of them only when none is full,
// so a blocked call is not counted and concurrent gateways cannot both take
// the last call of a window. Keys are PREFIX quota:{name}:{subject}:{window
// start, unix seconds} and expire a minute after their window ends.
//
// The script touches several keys, so on Redis Cluster the quotas of one
// call must hash to one slot; a single Redis (or a primary with replicas)
// has no such limit.
type RedisCounter struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedisCounter returns a RedisCounter on c (which it does not close),
// with keys under prefix ("apimeter:" when empty, as the identity
// package's keys).
func NewRedisCounter(c redis.UniversalClient, prefix string) *RedisCounter {
	if prefix == "" {
		prefix = "apimeter:"
	}
	return &RedisCounter{c: c, prefix: prefix}
}

// takeScript: KEYS are the windows' counters; ARGV holds each window's
// limit and time to live in milliseconds. It returns the 1-based index of
// the first full window, or 0 after counting the call in every window.
var takeScript = redis.NewScript(`
for i, k in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', k) or '0')
  if n + 1 > tonumber(ARGV[2*i-1]) then return i end
end
for i, k in ipairs(KEYS) do
  if redis.call('INCR', k) == 1 then redis.call('PEXPIRE', k, ARGV[2*i]) end
end
return 0
`)

// Take implements Counter.
func (r *RedisCounter) Take(ctx context.Context, now time.Time, ws []Window) (int, error) {
	keys := make([]string, len(ws))
	args := make([]any, 0, 2*len(ws))
	for i, w := range ws {
		keys[i] = r.prefix + "quota:" + w.Key
		args = append(args, w.Limit, (w.End.Sub(now) + time.Minute).Milliseconds())
	}
	n, err := takeScript.Run(ctx, r.c, keys, args...).Int()
	if err != nil {
		return -1, fmt.Errorf("redis: quota: %w", err)
	}
	return n - 1, nil
}
