package identity_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/store/duckdb"
)

// TestAliasTable checks the alias-table contract on every backend: upsert,
// move to another user, list by user, batch lookup across org/env, expiry
// retention, delete.
func TestAliasTable(t *testing.T) {
	ctx := context.Background()
	engines := []struct {
		name string
		open func(t *testing.T) identity.Aliases
	}{
		{"embedded", func(t *testing.T) identity.Aliases {
			st, err := duckdb.Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), duckdb.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			e, err := identity.OpenEmbedded(ctx, st.DB(), identity.EmbeddedOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return e
		}},
		{"redis", func(t *testing.T) identity.Aliases {
			return identity.NewRedis(startRedis(t), identity.RedisOptions{Prefix: "at:"})
		}},
	}
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			al := eng.open(t)
			h := func(k string) string { return scrub.KeyHash(k) }
			now := time.Now().UTC().Truncate(time.Millisecond)
			put := func(a identity.Alias) {
				t.Helper()
				if err := al.PutAlias(ctx, a); err != nil {
					t.Fatal(err)
				}
			}
			put(identity.Alias{Org: "o", Env: "prod", KeyHash: h("k1"), UserID: "u1", CompanyID: "c1", CreatedAt: now.Add(-3 * time.Second)})
			put(identity.Alias{Org: "o", Env: "prod", KeyHash: h("k2"), UserID: "u1", CreatedAt: now.Add(-2 * time.Second)})
			put(identity.Alias{Org: "o", Env: "prod", KeyHash: h("k3"), UserID: "u2", ExpiresAt: now.Add(-24 * time.Hour), CreatedAt: now.Add(-time.Second)})
			put(identity.Alias{Org: "o", Env: "prod", KeyHash: h("old"), UserID: "u1", ExpiresAt: now.Add(-40 * 24 * time.Hour), CreatedAt: now})
			put(identity.Alias{Org: "o", Env: "test", KeyHash: h("k1"), UserID: "u-test", CreatedAt: now})
			// Moving k2 to u2 takes it off u1's list.
			put(identity.Alias{Org: "o", Env: "prod", KeyHash: h("k2"), UserID: "u2", CreatedAt: now.Add(-2 * time.Second)})

			if err := al.PutAlias(ctx, identity.Alias{Org: "o", Env: "prod", KeyHash: "raw-key", UserID: "u"}); err == nil {
				t.Error("PutAlias accepted a key that is not a SHA-256")
			}
			ids := func(as []identity.Alias) []string {
				var out []string
				for _, a := range as {
					out = append(out, a.KeyID())
				}
				return out
			}
			for _, c := range []struct {
				user string
				want []string
			}{
				{"u1", []string{scrub.Fingerprint("k1")}},                          // "old" is past retention
				{"u2", []string{scrub.Fingerprint("k2"), scrub.Fingerprint("k3")}}, // oldest first
				{"nobody", nil},
			} {
				got, err := al.UserAliases(ctx, "o", "prod", c.user)
				if err != nil || len(got) != len(c.want) || (len(got) > 0 && ids(got)[0] != c.want[0]) {
					t.Errorf("UserAliases(%s) = %v, %v; want %v", c.user, ids(got), err, c.want)
				}
			}
			refs := []identity.AliasRef{{"o", "prod", h("k1")}, {"o", "test", h("k1")}, {"o", "prod", h("nope")}, {"o", "prod", h("k3")}, {"o", "prod", h("old")}, {"x", "prod", h("k1")}}
			out := make([]identity.Alias, len(refs))
			if err := al.LookupAliases(ctx, refs, out); err != nil {
				t.Fatal(err)
			}
			want := []string{"u1/c1", "u-test/", "/", "u2/", "/", "/"}
			for i := range refs {
				if got := out[i].UserID + "/" + out[i].CompanyID; got != want[i] {
					t.Errorf("lookup %d: %s, want %s", i, got, want[i])
				}
			}
			if !out[3].ExpiresAt.Equal(now.Add(-24*time.Hour)) || out[3].ValidAt(now) || !out[3].ValidAt(now.Add(-25*time.Hour)) {
				t.Errorf("expiry of k3 = %v, want %v and valid only before it", out[3].ExpiresAt, now.Add(-24*time.Hour))
			}
			if err := al.DeleteAlias(ctx, "o", "prod", h("k1")); err != nil {
				t.Fatal(err)
			}
			if _, err := al.GetAlias(ctx, "o", "prod", h("k1")); !errors.Is(err, apimeter.ErrNotFound) {
				t.Errorf("GetAlias after delete: %v, want ErrNotFound", err)
			}
			if err := al.DeleteAlias(ctx, "o", "prod", h("k1")); !errors.Is(err, apimeter.ErrNotFound) {
				t.Errorf("second delete: %v, want ErrNotFound", err)
			}
			if a, err := al.GetAlias(ctx, "o", "test", h("k1")); err != nil || a.UserID != "u-test" {
				t.Errorf("other env's alias: %+v, %v", a, err)
			}
		})
	}
}
