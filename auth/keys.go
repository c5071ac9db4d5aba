// Package auth holds apimeter's read and admin keys and checks them: keys
// bound to one org (optionally to some of its envs) with a scope, stored
// only as SHA-256 hashes in the data directory or, for several servers, in
// a table they share (Source); the check the server runs
// before every read and admin route (Bearer, Basic with the key as
// password, or a session cookie); and the sessions and one-time sign-in
// links of the dashboard, kept in memory.
package auth

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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apimeter/apimeter/internal/jsonfile"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/server"
)

// FileName is the key file inside the data directory (mode 0600). It holds
// each key's SHA-256, never the key.
const FileName = "keys.json"

// Prefix starts every key, so that a key found in a log or a repository is
// recognisable, and a credential that is no key is told apart cheaply.
const Prefix = "apmk_"

// secretBytes is the randomness of a key: 256 bits.
const secretBytes = 32

// Scopes of a key, as the CLI, the file and the HTTP API spell them.
const (
	ScopeRead  = "read"
	ScopeAdmin = "admin"
)

// Key is one key as stored: everything but the key itself.
type Key struct {
	ID      string     `json:"id"`
	Org     string     `json:"org"`
	Envs    []string   `json:"envs,omitempty"`
	Scope   string     `json:"scope"`
	Name    string     `json:"name,omitempty"`
	Hash    string     `json:"sha256"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`

	grant *server.Grant // built once per read of the file
}

// Grant is what the key allows, in the server's terms.
func (k Key) Grant() server.Grant {
	if k.grant != nil {
		return *k.grant
	}
	sc := server.Read
	if k.Scope == ScopeAdmin {
		sc = server.Admin
	}
	return server.Grant{KeyID: k.ID, Name: k.Name, Org: k.Org, Envs: k.Envs, Scope: sc}
}

// Spec says what a new key may do.
type Spec struct {
	Org   string
	Envs  []string // empty: every env of the org
	Scope string   // ScopeRead or ScopeAdmin
	Name  string
}

func (s *Spec) check() error {
	if !apps.ValidName(s.Org) {
		return fmt.Errorf("org %q: use 1-64 letters, digits, '.', '_' or '-'", s.Org)
	}
	for _, e := range s.Envs {
		if !apps.ValidName(e) {
			return fmt.Errorf("env %q: use 1-64 letters, digits, '.', '_' or '-'", e)
		}
	}
	slices.Sort(s.Envs)
	s.Envs = slices.Compact(s.Envs)
	if s.Scope != ScopeRead && s.Scope != ScopeAdmin {
		return fmt.Errorf("scope %q: want read or admin", s.Scope)
	}
	if len(s.Name) > 200 {
		return errors.New("name: at most 200 characters")
	}
	return nil
}

type file struct {
	Keys []Key `json:"keys"`
}

// HashKey returns the SHA-256 of a key, as stored. Keys are 256 random
// bits, so a plain hash is as strong as a slow one would be.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// NewKey returns a new random key.
func NewKey() string {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b)
}

func newID() string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "k" + hex.EncodeToString(b)
}

// ErrNotFound: no key has that id (in that org).
var ErrNotFound = errors.New("no key with that id")

// Create adds a key for spec to the key file of data directory dir
// (created if needed) and returns it with the key itself, which is not
// kept anywhere. A server running on dir finds the key on its first use.
func Create(dir string, spec Spec) (Key, string, error) {
	k, secret, err := newKey(spec)
	if err != nil {
		return Key{}, "", err
	}
	err = update(dir, func(f *file) error {
		f.Keys = append(f.Keys, k)
		return nil
	})
	if err != nil {
		return Key{}, "", err
	}
	return k, secret, nil
}

// newKey makes a key for spec: what is stored, and the key itself.
func newKey(spec Spec) (Key, string, error) {
	if err := spec.check(); err != nil {
		return Key{}, "", err
	}
	secret := NewKey()
	h := HashKey(secret)
	return Key{ID: newID(), Org: spec.Org, Envs: spec.Envs, Scope: spec.Scope, Name: spec.Name,
		Hash: hex.EncodeToString(h[:]), Created: time.Now().UTC().Truncate(time.Second)}, secret, nil
}

// Revoke marks the key id of data directory dir revoked; when org is not
// empty the key must belong to it. Revoking a revoked key changes nothing.
func Revoke(dir, org, id string) (Key, error) {
	var out Key
	err := update(dir, func(f *file) error {
		k := revoke(f.Keys, org, id)
		if k == nil {
			return ErrNotFound
		}
		out = *k
		return nil
	})
	return out, err
}

// revoke marks the key id (of org, unless org is empty) of keys revoked,
// unless it is already, and returns it; nil when there is none.
func revoke(keys []Key, org, id string) *Key {
	for i := range keys {
		k := &keys[i]
		if k.ID != id || (org != "" && k.Org != org) {
			continue
		}
		if k.Revoked == nil {
			t := time.Now().UTC().Truncate(time.Second)
			k.Revoked = &t
		}
		return k
	}
	return nil
}

// update changes the key file under an exclusive lock, so that concurrent
// creates and revokes (CLI and server) do not lose each other's changes,
// and replaces it atomically.
func update(dir string, change func(*file) error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "keys.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock keys: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	path := filepath.Join(dir, FileName)
	f, err := jsonfile.Read[file](path)
	if err != nil {
		return err
	}
	if err := change(&f); err != nil {
		return err
	}
	return jsonfile.Write(path, f)
}

// recheck is how often a Keys that keeps finding its keys looks at the file
// (or its Source) anyway, so that a key revoked by another process stops
// working.
const recheck = time.Second

// Source keeps keys somewhere other than a data directory's key file: a
// table that several servers share (store/clickhouse has one), so that a
// key created or revoked through one of them holds on all. A key never
// changes after it is created except to be revoked, and a revocation is
// never undone: PutKey may rely on that to order concurrent writes.
type Source interface {
	// LoadKeys returns every key, revoked ones included.
	LoadKeys(ctx context.Context) ([]Key, error)
	// PutKey adds k, or replaces the key of the same ID.
	PutKey(ctx context.Context, k Key) error
}

// sourceTimeout bounds one call to a Source (Keys' methods take no
// context: they run inside a request's key check).
const sourceTimeout = 10 * time.Second

// Keys is the key file of a data directory, or a Source, read into memory.
// It reads them again when they may have changed: on a key it does not
// know, and at most once a second otherwise (a Source also at most once a
// second on unknown keys, so that a flood of bad keys costs one query a
// second). Safe for concurrent use.
type Keys struct {
	dir, path string
	src       Source

	mu       sync.RWMutex
	byHash   map[[32]byte]*Key // active keys
	byID     map[string]*Key   // every key
	modTime  time.Time
	size     int64
	reloadMu sync.Mutex
	lastLoad time.Time // of src; under reloadMu
	// stale is set a second after the last look at the file (by a timer,
	// so that a lookup reads one atomic instead of the clock).
	stale atomic.Bool
	armed atomic.Bool
	// loading is set while a background read of src runs.
	loading atomic.Bool
}

// Open returns the keys of data directory dir.
func Open(dir string) (*Keys, error) {
	k := &Keys{dir: dir, path: filepath.Join(dir, FileName), byHash: map[[32]byte]*Key{}, byID: map[string]*Key{}}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// OpenSource returns the keys of src.
func OpenSource(src Source) (*Keys, error) {
	k := &Keys{src: src, byHash: map[[32]byte]*Key{}, byID: map[string]*Key{}}
	if err := k.load(true); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Keys) reload() error { return k.load(false) }

// load reads the keys again if they changed; force reads a Source even
// when it was read less than a second ago.
func (k *Keys) load(force bool) error {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	k.stale.Store(false)
	if k.armed.CompareAndSwap(false, true) {
		time.AfterFunc(recheck, func() {
			k.armed.Store(false)
			k.stale.Store(true)
		})
	}
	if k.src != nil {
		if !force && time.Since(k.lastLoad) < recheck {
			return nil
		}
		// Counted from the attempt, so that a Source that fails is not
		// asked again on every unknown key either.
		k.lastLoad = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), sourceTimeout)
		defer cancel()
		keys, err := k.src.LoadKeys(ctx)
		if err != nil {
			return fmt.Errorf("load keys: %w", err)
		}
		k.index(keys, time.Time{}, 0)
		return nil
	}
	st, err := os.Stat(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	k.mu.RLock()
	same := st.ModTime().Equal(k.modTime) && st.Size() == k.size
	k.mu.RUnlock()
	if same {
		return nil
	}
	f, err := jsonfile.Read[file](k.path)
	if err != nil {
		return err
	}
	k.index(f.Keys, st.ModTime(), st.Size())
	return nil
}

// index makes keys the ones looked up, remembering the file's modTime and
// size.
func (k *Keys) index(keys []Key, modTime time.Time, size int64) {
	byHash := make(map[[32]byte]*Key, len(keys))
	byID := make(map[string]*Key, len(keys))
	for i := range keys {
		key := &keys[i]
		g := key.Grant()
		key.grant = &g
		byID[key.ID] = key
		var h [32]byte
		if n, err := hex.Decode(h[:], []byte(key.Hash)); err != nil || n != 32 || key.Revoked != nil {
			continue
		}
		byHash[h] = key
	}
	k.mu.Lock()
	k.byHash, k.byID, k.modTime, k.size = byHash, byID, modTime, size
	k.mu.Unlock()
}

// fresh re-reads the file when it was last looked at over a second ago. A
// Source is re-read in the background, one read at a time, so that no
// request waits for it (a known key is answered from memory meanwhile).
func (k *Keys) fresh() {
	if !k.stale.Load() {
		return
	}
	if k.src == nil {
		_ = k.reload()
		return
	}
	if k.loading.CompareAndSwap(false, true) {
		// Ends within sourceTimeout.
		go func() {
			defer k.loading.Store(false)
			_ = k.reload()
		}()
	}
}

// byHash returns the active key with hash h. The *Key is of the file as
// last read and never changes: a re-read makes new ones.
func (k *Keys) byHashLocked(h *[32]byte) (*Key, bool) {
	k.mu.RLock()
	key, ok := k.byHash[*h]
	k.mu.RUnlock()
	// Looking a key up by its hash leaks, through timing, at most something
	// about a hash of 256 random bits: nothing to guess a key from.
	return key, ok
}

// Lookup returns the active key secret is, if any.
func (k *Keys) Lookup(secret string) (Key, bool) {
	var buf [128]byte
	var key *Key
	if len(secret) <= len(buf) {
		// Hash from the stack: no allocation per request.
		key = k.lookupBytes(append(buf[:0], secret...))
	} else {
		key = k.lookupBytes([]byte(secret))
	}
	if key == nil {
		return Key{}, false
	}
	return *key, true
}

func (k *Keys) lookupBytes(secret []byte) *Key {
	h := sha256.Sum256(secret)
	k.fresh()
	if key, ok := k.byHashLocked(&h); ok {
		return key
	}
	if err := k.reload(); err != nil {
		return nil
	}
	key, _ := k.byHashLocked(&h)
	return key
}

// grantOf returns the grant of the active key with that id, or nil.
func (k *Keys) grantOf(id string) *server.Grant {
	k.fresh()
	k.mu.RLock()
	key := k.byID[id]
	k.mu.RUnlock()
	if key == nil {
		if k.reload() != nil {
			return nil
		}
		k.mu.RLock()
		key = k.byID[id]
		k.mu.RUnlock()
	}
	if key == nil || key.Revoked != nil {
		return nil
	}
	return key.grant
}

// ByID returns the key with that id, revoked or not.
func (k *Keys) ByID(id string) (Key, bool) {
	k.fresh()
	k.mu.RLock()
	key, ok := k.byID[id]
	k.mu.RUnlock()
	if !ok {
		if k.reload() != nil {
			return Key{}, false
		}
		k.mu.RLock()
		key, ok = k.byID[id]
		k.mu.RUnlock()
		if !ok {
			return Key{}, false
		}
	}
	return *key, true
}

// List returns the keys of org (every key when org is empty), oldest
// first.
func (k *Keys) List(org string) []Key {
	_ = k.load(true)
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]Key, 0, len(k.byID))
	for _, key := range k.byID {
		if org == "" || key.Org == org {
			out = append(out, *key)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Create adds a key to the file (or Source) and to this Keys at once.
func (k *Keys) Create(spec Spec) (Key, string, error) {
	if k.src == nil {
		key, secret, err := Create(k.dir, spec)
		if err == nil {
			err = k.reload()
		}
		return key, secret, err
	}
	key, secret, err := newKey(spec)
	if err != nil {
		return Key{}, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), sourceTimeout)
	defer cancel()
	if err := k.src.PutKey(ctx, key); err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	return key, secret, k.load(true)
}

// Revoke revokes a key of org (any org when empty), here at once.
func (k *Keys) Revoke(org, id string) (Key, error) {
	if k.src == nil {
		key, err := Revoke(k.dir, org, id)
		if err == nil {
			err = k.reload()
		}
		return key, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), sourceTimeout)
	defer cancel()
	keys, err := k.src.LoadKeys(ctx)
	if err != nil {
		return Key{}, fmt.Errorf("load keys: %w", err)
	}
	key := revoke(keys, org, id)
	if key == nil {
		return Key{}, ErrNotFound
	}
	if err := k.src.PutKey(ctx, *key); err != nil {
		return Key{}, fmt.Errorf("revoke key %s: %w", id, err)
	}
	return *key, k.load(true)
}
