// Package token holds the customer portal's tokens: each bound to one
// customer (a user or company id) of one org and env, with an expiry and
// optional limits, stored only as its SHA-256 in the data directory or, for
// several servers, in a table they share (Source).
package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/apimeter/apimeter/internal/jsonfile"

	"github.com/apimeter/apimeter/apps"
)

// Prefix starts every portal token, so that one found in a log is
// recognisable and is never mistaken for a read key (apmk_).
const Prefix = "apmp_"

// FileName is the token file inside the data directory (mode 0600). It
// holds each token's SHA-256, never the token.
const FileName = "portal_tokens.json"

// Kinds of customer a token is bound to.
const (
	KindUser    = "user"
	KindCompany = "company"
)

// Pages a token may be limited to; no limit means all of them.
const (
	PageUsage      = "usage"      // usage, the Metrics API: calls, errors, latency by route, API, key
	PageCalls      = "calls"      // recent calls (the stored events)
	PageQuota      = "quota"      // quota headroom
	PageMeters     = "meters"     // meters, where the server has them
	PageStatements = "statements" // statements, where the server has them
)

// Pages lists every page, in the order the portal shows them.
func Pages() []string {
	return []string{PageUsage, PageCalls, PageQuota, PageMeters, PageStatements}
}

// Bounds of a token's lifetime.
const (
	DefaultTTL = time.Hour
	MaxTTL     = 90 * 24 * time.Hour
	// keepExpired is how long an expired token stays listed before it is
	// dropped from the file (the ClickHouse table drops it by TTL).
	keepExpired = 7 * 24 * time.Hour
)

// Customer is who a token reads for.
type Customer struct {
	Kind string `json:"kind"` // KindUser or KindCompany
	ID   string `json:"id"`
}

// Column is the events column a customer's rows are selected by.
func (c Customer) Column() string {
	if c.Kind == KindCompany {
		return "company_id"
	}
	return "user_id"
}

// Token is one portal token as stored: everything but the token itself.
type Token struct {
	ID       string   `json:"id"`
	Org      string   `json:"org"`
	Env      string   `json:"env"`
	Customer Customer `json:"customer"`
	Name     string   `json:"name,omitempty"`
	// Pages and Meters, when not empty, are the only pages and meters the
	// token reads.
	Pages   []string   `json:"pages,omitempty"`
	Meters  []string   `json:"meters,omitempty"`
	Hash    string     `json:"sha256"`
	Created time.Time  `json:"created"`
	Expires time.Time  `json:"expires"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Allows reports whether the token reads page.
func (t *Token) Allows(page string) bool {
	return len(t.Pages) == 0 || slices.Contains(t.Pages, page)
}

// AllowsMeter reports whether the token reads meter.
func (t *Token) AllowsMeter(meter string) bool {
	return len(t.Meters) == 0 || slices.Contains(t.Meters, meter)
}

// ValidAt reports whether the token works at now: not revoked, not expired.
func (t *Token) ValidAt(now time.Time) bool {
	return t.Revoked == nil && now.Before(t.Expires)
}

// Spec says what a new token reads.
type Spec struct {
	Org, Env string
	Customer Customer
	Name     string
	// TTL is how long the token works; 0 means DefaultTTL, at most MaxTTL.
	TTL    time.Duration
	Pages  []string
	Meters []string
}

// SpecError is a bad Spec; Field names what is wrong.
type SpecError struct {
	Field, Msg string
}

func (e *SpecError) Error() string { return e.Field + ": " + e.Msg }

func (s *Spec) check() error {
	if !apps.ValidName(s.Org) {
		return &SpecError{"org", fmt.Sprintf("%q: use 1-64 letters, digits, '.', '_' or '-'", s.Org)}
	}
	if !apps.ValidName(s.Env) {
		return &SpecError{"env", fmt.Sprintf("%q: use 1-64 letters, digits, '.', '_' or '-'", s.Env)}
	}
	switch s.Customer.Kind {
	case KindUser, KindCompany:
	default:
		return &SpecError{"customer", fmt.Sprintf("kind %q: want user or company", s.Customer.Kind)}
	}
	// The empty id stands for the calls no one was identified for: a
	// token must never read those, they belong to no customer.
	if id := s.Customer.ID; id == "" || len(id) > 256 || !utf8.ValidString(id) || strings.ContainsAny(id, "\x00\r\n") {
		return &SpecError{"customer", "id: 1-256 characters of UTF-8 text, the user or company id as events carry it"}
	}
	switch {
	case s.TTL == 0:
		s.TTL = DefaultTTL
	case s.TTL < time.Minute || s.TTL > MaxTTL:
		return &SpecError{"ttl", fmt.Sprintf("%v: from 1m to %v", s.TTL, MaxTTL)}
	}
	for _, p := range s.Pages {
		if !slices.Contains(Pages(), p) {
			return &SpecError{"pages", fmt.Sprintf("%q: want some of %s", p, strings.Join(Pages(), ", "))}
		}
	}
	for _, m := range s.Meters {
		if m == "" || len(m) > 200 {
			return &SpecError{"meters", "a meter is named by 1-200 characters"}
		}
	}
	if len(s.Name) > 200 {
		return &SpecError{"name", "at most 200 characters"}
	}
	slices.Sort(s.Pages)
	s.Pages = slices.Compact(s.Pages)
	slices.Sort(s.Meters)
	s.Meters = slices.Compact(s.Meters)
	return nil
}

// HashToken returns the SHA-256 of a token, as stored. Tokens are 256
// random bits: a plain hash is as strong as a slow one would be, and as
// unforgeable as a signature, with no signing key to share between the
// servers of a store.
func HashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// newToken makes a token for spec: what is stored, and the token itself.
func newToken(spec Spec, now time.Time) (Token, string, error) {
	if err := spec.check(); err != nil {
		return Token{}, "", err
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	secret := Prefix + randomString(32)
	h := HashToken(secret)
	now = now.UTC().Truncate(time.Second)
	return Token{
		ID: "t" + hex.EncodeToString(b), Org: spec.Org, Env: spec.Env, Customer: spec.Customer, Name: spec.Name,
		Pages: spec.Pages, Meters: spec.Meters, Hash: hex.EncodeToString(h[:]),
		Created: now, Expires: now.Add(spec.TTL),
	}, secret, nil
}

// ErrNotFound: no token has that id (in that org).
var ErrNotFound = errors.New("no portal token with that id")

// Source keeps tokens somewhere other than a data directory's file: a
// table several servers share (store/clickhouse has one), as auth.Source
// does for keys. A token never changes after it is created except to be
// revoked, and a revocation is never undone.
type Source interface {
	// LoadTokens returns the tokens not long expired, revoked ones too.
	LoadTokens(ctx context.Context) ([]Token, error)
	// PutToken adds t, or replaces the token of the same ID.
	PutToken(ctx context.Context, t Token) error
}

// recheck is how often the tokens are read again while known tokens keep
// coming, so that a revocation through another process holds within it.
const recheck = time.Second

const sourceTimeout = 10 * time.Second

// Tokens is the token file of a data directory, or a Source, read into
// memory and read again at most once a second (on an unknown token, or
// when a second has passed). Safe for concurrent use.
type Tokens struct {
	dir string
	src Source
	now func() time.Time

	mu       sync.RWMutex
	byHash   map[[32]byte]*Token
	byID     map[string]*Token
	loaded   time.Time // when last read
	modTime  time.Time
	size     int64
	reloadMu sync.Mutex
}

// Open returns the tokens of data directory dir.
func Open(dir string) (*Tokens, error) {
	t := &Tokens{dir: dir, now: time.Now}
	return t, t.load(true, false)
}

// OpenSource returns the tokens of src.
func OpenSource(src Source) (*Tokens, error) {
	t := &Tokens{src: src, now: time.Now}
	return t, t.load(true, false)
}

// SetClock replaces the clock expiry is checked with (tests).
func (t *Tokens) SetClock(now func() time.Time) { t.now = now }

// load reads the tokens again: always when force, else at most once a
// second, or, from a file, whenever it changed (a stat tells) when
// unknown is set (a token not known yet, maybe minted by the CLI).
func (t *Tokens) load(force, unknown bool) error {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	fileCheck := t.src == nil && unknown
	if !force && !fileCheck && time.Since(t.loaded) < recheck {
		return nil
	}
	t.loaded = time.Now()
	if t.src != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sourceTimeout)
		defer cancel()
		toks, err := t.src.LoadTokens(ctx)
		if err != nil {
			return fmt.Errorf("load portal tokens: %w", err)
		}
		t.index(toks)
		return nil
	}
	path := filepath.Join(t.dir, FileName)
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		t.index(nil)
		return nil
	}
	if err != nil {
		return err
	}
	if !force && st.ModTime().Equal(t.modTime) && st.Size() == t.size {
		return nil
	}
	f, err := jsonfile.Read[file](path)
	if err != nil {
		return err
	}
	t.modTime, t.size = st.ModTime(), st.Size()
	t.index(f.Tokens)
	return nil
}

func (t *Tokens) index(toks []Token) {
	byHash := make(map[[32]byte]*Token, len(toks))
	byID := make(map[string]*Token, len(toks))
	for i := range toks {
		tok := &toks[i]
		byID[tok.ID] = tok
		var h [32]byte
		if n, err := hex.Decode(h[:], []byte(tok.Hash)); err != nil || n != 32 {
			continue
		}
		byHash[h] = tok
	}
	t.mu.Lock()
	t.byHash, t.byID = byHash, byID
	t.mu.Unlock()
}

// Lookup returns the token secret is when it is valid now: known, not
// revoked, not expired.
func (t *Tokens) Lookup(secret string) (Token, bool) {
	if !strings.HasPrefix(secret, Prefix) || len(secret) > 128 {
		return Token{}, false
	}
	h := HashToken(secret)
	_ = t.load(false, false)
	t.mu.RLock()
	tok, ok := t.byHash[h]
	t.mu.RUnlock()
	if !ok {
		if t.src != nil {
			// A token minted through another server a moment ago: wait for
			// the next read of the Source rather than refuse it, so that a
			// page opened right after minting works. Unknown tokens still
			// cost at most one read a second, each waiting up to a second.
			t.reloadMu.Lock()
			wait := recheck - time.Since(t.loaded)
			t.reloadMu.Unlock()
			if wait > 0 {
				time.Sleep(wait)
			}
		}
		_ = t.load(false, true)
		t.mu.RLock()
		tok, ok = t.byHash[h]
		t.mu.RUnlock()
	}
	if !ok || !tok.ValidAt(t.now()) {
		return Token{}, false
	}
	return *tok, true
}

// List returns the tokens of org (all when org is empty), newest first.
func (t *Tokens) List(org string) ([]Token, error) {
	if err := t.load(true, false); err != nil {
		return nil, err
	}
	t.mu.RLock()
	out := make([]Token, 0, len(t.byID))
	for _, tok := range t.byID {
		if org == "" || tok.Org == org {
			out = append(out, *tok)
		}
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Create adds a token for spec and returns it with the token itself, which
// is kept nowhere.
func (t *Tokens) Create(ctx context.Context, spec Spec) (Token, string, error) {
	tok, secret, err := newToken(spec, t.now())
	if err != nil {
		return Token{}, "", err
	}
	if t.src != nil {
		if err := t.src.PutToken(ctx, tok); err != nil {
			return Token{}, "", fmt.Errorf("create portal token: %w", err)
		}
	} else {
		now := t.now()
		err := t.update(func(f *file) error {
			// Long-expired tokens leave the file as new ones come in, so that
			// a backend minting one per session keeps it small.
			f.Tokens = slices.DeleteFunc(f.Tokens, func(x Token) bool { return now.Sub(x.Expires) > keepExpired })
			f.Tokens = append(f.Tokens, tok)
			return nil
		})
		if err != nil {
			return Token{}, "", err
		}
	}
	return tok, secret, t.load(true, false)
}

// Revoke revokes token id of org (any org when empty).
func (t *Tokens) Revoke(ctx context.Context, org, id string) (Token, error) {
	var out Token
	revoke := func(toks []Token) *Token {
		for i := range toks {
			tok := &toks[i]
			if tok.ID != id || (org != "" && tok.Org != org) {
				continue
			}
			if tok.Revoked == nil {
				r := t.now().UTC().Truncate(time.Second)
				tok.Revoked = &r
			}
			return tok
		}
		return nil
	}
	if t.src != nil {
		toks, err := t.src.LoadTokens(ctx)
		if err != nil {
			return Token{}, fmt.Errorf("load portal tokens: %w", err)
		}
		tok := revoke(toks)
		if tok == nil {
			return Token{}, ErrNotFound
		}
		if err := t.src.PutToken(ctx, *tok); err != nil {
			return Token{}, fmt.Errorf("revoke portal token %s: %w", id, err)
		}
		out = *tok
	} else {
		err := t.update(func(f *file) error {
			tok := revoke(f.Tokens)
			if tok == nil {
				return ErrNotFound
			}
			out = *tok
			return nil
		})
		if err != nil {
			return Token{}, err
		}
	}
	return out, t.load(true, false)
}

type file struct {
	Tokens []Token `json:"tokens"`
}

// update changes the token file under an exclusive lock (CLI and server
// may write at once) and replaces it atomically.
func (t *Tokens) update(change func(*file) error) error {
	if err := os.MkdirAll(t.dir, 0o750); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(t.dir, "portal_tokens.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock portal tokens: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	path := filepath.Join(t.dir, FileName)
	f, err := jsonfile.Read[file](path)
	if err != nil {
		return err
	}
	if err := change(&f); err != nil {
		return err
	}
	return jsonfile.Write(path, f)
}
