package clickhouse

import (
	"context"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
)

// TestKeysTable: two collectors on one database share their keys through
// the auth_keys table, and a revocation wins over an older active row
// written after it (a slow writer, a clock behind).
func TestKeysTable(t *testing.T) {
	ctx := context.Background()
	a, dsn := openTest(t, Options{NoDedupe: true})
	defer a.Close()
	b, err := Open(ctx, dsn, Options{NoDedupe: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ka, err := auth.OpenSource(a)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := auth.OpenSource(b)
	if err != nil {
		t.Fatal(err)
	}
	k, secret, err := ka.Create(auth.Spec{Org: "acme", Envs: []string{"prod", "test"}, Scope: auth.ScopeAdmin, Name: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	all := kb.List("")
	if len(all) != 1 {
		t.Fatalf("the other collector lists %d keys, want 1", len(all))
	}
	got := all[0]
	if got.ID != k.ID || got.Org != "acme" || len(got.Envs) != 2 || got.Scope != auth.ScopeAdmin || got.Name != "ops" ||
		got.Hash != k.Hash || !got.Created.Equal(k.Created) || got.Revoked != nil {
		t.Fatalf("read back %+v, want %+v", got, k)
	}
	if _, ok := kb.Lookup(secret); !ok {
		t.Fatal("the other collector does not accept the key")
	}
	r, err := kb.Revoke("acme", k.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The active row again, as a slow writer would send it after the
	// revocation.
	if err := a.PutKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	for name, keys := range map[string]*auth.Keys{"creator": ka, "revoker": kb} {
		keys.List("")
		if _, ok := keys.Lookup(secret); ok {
			t.Errorf("%s still accepts the revoked key", name)
		}
		if got, ok := keys.ByID(k.ID); !ok || got.Revoked == nil || !got.Revoked.Equal(r.Revoked.Truncate(time.Second)) {
			t.Errorf("%s: key %+v %v, want revoked at %v", name, got, ok, r.Revoked)
		}
	}
}

// TestSetting: the first value written of a name is the one every store
// on the database reads.
func TestSetting(t *testing.T) {
	ctx := context.Background()
	a, dsn := openTest(t, Options{NoDedupe: true})
	defer a.Close()
	b, err := Open(ctx, dsn, Options{NoDedupe: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, err := a.Setting(ctx, "check", "first"); err != nil || got != "first" {
		t.Fatalf("first Setting: %q %v, want first", got, err)
	}
	if got, err := b.Setting(ctx, "check", "second"); err != nil || got != "first" {
		t.Fatalf("Setting of another store: %q %v, want first", got, err)
	}
	if got, err := b.Setting(ctx, "other", "x"); err != nil || got != "x" {
		t.Fatalf("Setting of another name: %q %v, want x", got, err)
	}
}
