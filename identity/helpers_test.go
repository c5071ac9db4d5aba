package identity_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis starts a throwaway redis-server on a free loopback port with
// persistence off, or skips the test when the binary is absent.
func startRedis(t testing.TB) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not found on PATH: skipping the Redis backend (CI installs it; apt-get install redis-server)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d did not answer PING: %v\n%s", port, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

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
