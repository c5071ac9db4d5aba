package apps

import (
	"sync"
	"testing"
)

func TestCreateAndLookup(t *testing.T) {
	dir := t.TempDir()
	reg, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Ids created by another process (here: concurrently, without the
	// registry) are found without a restart, and none is lost.
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := Create(dir, "acme", "prod")
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = a.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		a, ok := reg.Lookup(id)
		if !ok || a.Org != "acme" || a.Env != "prod" {
			t.Errorf("Lookup(%q) = %+v, %v", id, a, ok)
		}
		if len(id) < 50 {
			t.Errorf("id %q shorter than 50 characters", id)
		}
	}
	if n := len(reg.List()); n != len(ids) {
		t.Errorf("List has %d apps, want %d", n, len(ids))
	}
	if _, ok := reg.Lookup("nope"); ok {
		t.Error("unknown id found")
	}
}

func TestCreateRejectsBadNames(t *testing.T) {
	for _, c := range []struct{ org, env string }{{"", "prod"}, {"acme", ""}, {"a b", "prod"}, {"acme", "../x"}} {
		if _, err := Create(t.TempDir(), c.org, c.env); err == nil {
			t.Errorf("Create(%q, %q) accepted", c.org, c.env)
		}
	}
}
