package portal_test

import (
	"context"
	"testing"
	"time"

	"github.com/apimeter/apimeter/portal/token"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
)

// TestTokensShared: two servers on one store (two Tokens on one data
// directory, or on one ClickHouse database): a token minted through one
// works at once on the other, and a revocation through one holds on the
// other within a second or so.
func TestTokensShared(t *testing.T) {
	ctx := context.Background()
	open := map[string]func(t *testing.T) (*token.Tokens, *token.Tokens){
		"dir": func(t *testing.T) (*token.Tokens, *token.Tokens) {
			dir := t.TempDir()
			a, err := token.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			b, err := token.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			return a, b
		},
		"clickhouse": func(t *testing.T) (*token.Tokens, *token.Tokens) {
			dsn := chtest.Shared(t).DSN(chtest.Database(t))
			var ts [2]*token.Tokens
			for i := range ts {
				c, err := clickhouse.Open(ctx, dsn, clickhouse.Options{NoDedupe: true})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if ts[i], err = token.OpenSource(c); err != nil {
					t.Fatal(err)
				}
			}
			return ts[0], ts[1]
		},
	}
	for name, f := range open {
		t.Run(name, func(t *testing.T) {
			a, b := f(t)
			b.Lookup(token.Prefix + "warm-up") // b has just read its tokens
			tok, secret, err := a.Create(ctx, token.Spec{Org: "acme", Env: "prod", Customer: token.Customer{Kind: token.KindUser, ID: "u1"}})
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := b.Lookup(secret); !ok || got.ID != tok.ID || got.Customer.ID != "u1" {
				t.Fatalf("the other server does not know the new token: %+v %v", got, ok)
			}
			if _, err := a.Revoke(ctx, "other", tok.ID); err != token.ErrNotFound {
				t.Errorf("revoking through another org: %v, want ErrNotFound", err)
			}
			if _, err := a.Revoke(ctx, "acme", tok.ID); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, ok := b.Lookup(secret); !ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the other server still takes the revoked token 5 s later")
				}
				time.Sleep(100 * time.Millisecond)
			}
			list, err := b.List("acme")
			if err != nil || len(list) != 1 || list[0].Revoked == nil || list[0].Hash == "" {
				t.Fatalf("list: %+v %v", list, err)
			}
		})
	}
}
