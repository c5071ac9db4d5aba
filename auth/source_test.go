package auth_test

import (
	"context"
	"sync"
	"testing"

	"github.com/apimeter/apimeter/auth"
)

// memSource is a Source in memory: the table several servers would share.
type memSource struct {
	mu   sync.Mutex
	keys []auth.Key
	// loads counts LoadKeys calls.
	loads int
}

func (m *memSource) LoadKeys(context.Context) ([]auth.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	return append([]auth.Key(nil), m.keys...), nil
}

func (m *memSource) PutKey(_ context.Context, k auth.Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].ID == k.ID {
			m.keys[i] = k
			return nil
		}
	}
	m.keys = append(m.keys, k)
	return nil
}

// TestSourceSharedByServers: a key created through one Keys on a Source
// is found by another on the same Source; revoked through the second, the
// first stops accepting it once it reads the Source again; unknown keys
// do not make it read the Source on every lookup.
func TestSourceSharedByServers(t *testing.T) {
	src := &memSource{}
	a, err := auth.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := auth.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	k, secret, err := a.Create(auth.Spec{Org: "acme", Scope: auth.ScopeRead, Envs: []string{"prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.List("acme"); len(got) != 1 || got[0].ID != k.ID || got[0].Envs[0] != "prod" {
		t.Fatalf("List on the second Keys: %+v, want the key %s", got, k.ID)
	}
	if got, ok := b.Lookup(secret); !ok || got.ID != k.ID || got.Grant().Org != "acme" {
		t.Fatalf("Lookup on the second Keys: %+v %v, want key %s of acme", got, ok, k.ID)
	}
	before := src.loads
	for range 100 {
		b.Lookup(auth.NewKey())
	}
	// At most one read a second; 10 leaves room for a very slow machine.
	if n := src.loads - before; n > 10 {
		t.Errorf("100 unknown keys read the source %d times, want at most one read a second", n)
	}
	if _, err := b.Revoke("other", k.ID); err != auth.ErrNotFound {
		t.Errorf("revoke as another org: %v, want ErrNotFound", err)
	}
	r, err := b.Revoke("acme", k.ID)
	if err != nil || r.Revoked == nil {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	if _, ok := b.Lookup(secret); ok {
		t.Error("the Keys that revoked the key still accepts it")
	}
	a.List("") // reads the source again, as the once-a-second recheck does
	if _, ok := a.Lookup(secret); ok {
		t.Error("the other Keys still accepts the revoked key after reading the source")
	}
}
