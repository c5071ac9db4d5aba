package token

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSpecCheck(t *testing.T) {
	ok := Spec{Org: "acme", Env: "prod", Customer: Customer{Kind: KindUser, ID: "u1"}}
	for name, c := range map[string]struct {
		change func(*Spec)
		field  string
	}{
		"fine":            {func(*Spec) {}, ""},
		"bad org":         {func(s *Spec) { s.Org = "a b" }, "org"},
		"bad env":         {func(s *Spec) { s.Env = "" }, "env"},
		"no kind":         {func(s *Spec) { s.Customer.Kind = "" }, "customer"},
		"admin kind":      {func(s *Spec) { s.Customer.Kind = "admin" }, "customer"},
		"empty id":        {func(s *Spec) { s.Customer.ID = "" }, "customer"},
		"id with newline": {func(s *Spec) { s.Customer.ID = "u1\nu2" }, "customer"},
		"long id":         {func(s *Spec) { s.Customer.ID = strings.Repeat("x", 257) }, "customer"},
		"ttl too short":   {func(s *Spec) { s.TTL = time.Second }, "ttl"},
		"ttl too long":    {func(s *Spec) { s.TTL = MaxTTL + time.Hour }, "ttl"},
		"unknown page":    {func(s *Spec) { s.Pages = []string{"admin"} }, "pages"},
		"empty meter":     {func(s *Spec) { s.Meters = []string{""} }, "meters"},
	} {
		s := ok
		c.change(&s)
		err := s.check()
		var se *SpecError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.field != "" && (!errors.As(err, &se) || se.Field != c.field):
			t.Errorf("%s: %v, want an error of field %s", name, err, c.field)
		}
	}
}

// TestFile: only hashes reach the file (mode 0600); a token works until it
// expires; long-expired tokens leave the file as new ones come.
func TestFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ts, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ts.SetClock(func() time.Time { return now })
	old, oldSecret, err := ts.Create(ctx, Spec{Org: "acme", Env: "prod", Customer: Customer{Kind: KindCompany, ID: "c1"}, TTL: time.Hour, Pages: []string{PageUsage, PageUsage}})
	if err != nil {
		t.Fatal(err)
	}
	if len(old.Pages) != 1 || !old.Allows(PageUsage) || old.Allows(PageCalls) || !old.AllowsMeter("anything") {
		t.Errorf("limits: %+v", old)
	}
	if got, ok := ts.Lookup(oldSecret); !ok || got.ID != old.ID {
		t.Fatalf("lookup: %+v %v", got, ok)
	}
	now = now.Add(time.Hour)
	if _, ok := ts.Lookup(oldSecret); ok {
		t.Error("an expired token works")
	}
	now = now.Add(keepExpired + time.Minute)
	_, secret, err := ts.Create(ctx, Spec{Org: "acme", Env: "prod", Customer: Customer{Kind: KindUser, ID: "u1"}})
	if err != nil {
		t.Fatal(err)
	}
	list, _ := ts.List("acme")
	if len(list) != 1 || list[0].Customer.ID != "u1" {
		t.Errorf("after a week past expiry the old token is still listed: %+v", list)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secret, oldSecret, strings.TrimPrefix(secret, Prefix)} {
		if strings.Contains(string(b), s) {
			t.Error("a token is in clear in the file")
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, FileName)); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	for _, bad := range []string{"", "apmk_" + secret[5:], secret + "x", strings.Repeat("a", 200)} {
		if _, ok := ts.Lookup(bad); ok {
			t.Errorf("lookup %q works", bad)
		}
	}
}
