package identity_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter/internal/redistest"
)

// startRedis starts a throwaway redis-server, or skips the test when the
// binary is absent.
func startRedis(t testing.TB) *redis.Client { return redistest.Start(t) }

// scanDir fails the test if any file under dir holds any of secrets, and
// reports whether it found every one of present (a control showing that
// the scan sees stored strings at all).
func scanDir(t *testing.T, dir string, secrets, present []string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("raw secret %q found in %s", s, path)
			}
		}
		for _, s := range present {
			if bytes.Contains(b, []byte(s)) {
				seen[s] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range present {
		if !seen[s] {
			t.Errorf("control string %q not found anywhere in %s: the scan cannot see stored data", s, dir)
		}
	}
}

// scanRedis fails the test if any key name or value in Redis holds any of
// secrets, and checks that the control strings are found.
func scanRedis(t *testing.T, c *redis.Client, secrets, present []string) {
	t.Helper()
	ctx := context.Background()
	var blob bytes.Buffer
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	n := 0
	for iter.Next(ctx) {
		k := iter.Val()
		n++
		blob.WriteString(k + "\n")
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				blob.WriteString(f + "=" + v + "\n")
			}
		case "set":
			for _, v := range c.SMembers(ctx, k).Val() {
				blob.WriteString(v + "\n")
			}
		case "string":
			blob.WriteString(c.Get(ctx, k).Val() + "\n")
		default:
			t.Errorf("unexpected Redis type %s of key %s", typ, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("Redis holds no keys at all")
	}
	for _, s := range secrets {
		if bytes.Contains(blob.Bytes(), []byte(s)) {
			t.Errorf("raw secret %q found in Redis", s)
		}
	}
	for _, s := range present {
		if !bytes.Contains(blob.Bytes(), []byte(s)) {
			t.Errorf("control string %q not found in Redis: the scan cannot see stored data", s)
		}
	}
}
