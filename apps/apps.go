// Package apps keeps the application ids (write keys) that senders put in
// X-Moesif-Application-Id, each mapped to an (org, env). The registry is a
// small JSON file in the data directory, separate from the event database,
// so that `apimeter apps create` works while a server holds the database
// open; the server picks new ids up on its next lookup.
package apps

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/apimeter/apimeter/internal/jsonfile"
)

// App is one application id and where its events go.
type App struct {
	ID      string    `json:"id"`
	Org     string    `json:"org"`
	Env     string    `json:"env"`
	Created time.Time `json:"created"`
}

type file struct {
	Apps []App `json:"apps"`
}

// FileName is the registry's file inside the data directory.
const FileName = "apps.json"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether s may be used as an org or env name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Registry looks application ids up. It is safe for concurrent use.
type Registry struct {
	path string
	// load, when set, lists the apps instead of the file (a registry
	// shared through a database); lastLoad bounds how often.
	load     Loader
	lastLoad time.Time

	mu      sync.RWMutex
	byID    map[string]App
	modTime time.Time
	size    int64
}

// Open returns the registry of the data directory dir (which must exist).
func Open(dir string) (*Registry, error) {
	r := &Registry{path: filepath.Join(dir, FileName), byID: map[string]App{}}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Loader lists every app from somewhere other than the file: a database
// several servers share (store/clickhouse keeps them in a table).
type Loader func() ([]App, error)

// OpenLoader returns a registry that reads its apps from load. An id not
// known yet makes it load again, at most once a second, so that unknown
// ids sent in a loop cost no more than one load a second.
func OpenLoader(load Loader) (*Registry, error) {
	r := &Registry{load: load, byID: map[string]App{}}
	if err := r.reloadFrom(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Registry) reloadFrom() error {
	r.mu.Lock()
	if !r.lastLoad.IsZero() && time.Since(r.lastLoad) < time.Second {
		r.mu.Unlock()
		return nil
	}
	r.lastLoad = time.Now()
	r.mu.Unlock()
	list, err := r.load()
	if err != nil {
		return fmt.Errorf("load apps: %w", err)
	}
	m := make(map[string]App, len(list))
	for _, a := range list {
		m[a.ID] = a
	}
	r.mu.Lock()
	r.byID = m
	r.mu.Unlock()
	return nil
}

func (r *Registry) reload() error {
	if r.load != nil {
		return r.reloadFrom()
	}
	st, err := os.Stat(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	r.mu.RLock()
	same := st.ModTime().Equal(r.modTime) && st.Size() == r.size
	r.mu.RUnlock()
	if same {
		return nil
	}
	f, err := jsonfile.Read[file](r.path)
	if err != nil {
		return err
	}
	m := make(map[string]App, len(f.Apps))
	for _, a := range f.Apps {
		m[a.ID] = a
	}
	r.mu.Lock()
	r.byID, r.modTime, r.size = m, st.ModTime(), st.Size()
	r.mu.Unlock()
	return nil
}

// Lookup returns the app with the given id. An id not known yet makes the
// registry re-read its file once, so ids created by another process work
// without a restart.
func (r *Registry) Lookup(id string) (App, bool) {
	r.mu.RLock()
	a, ok := r.byID[id]
	r.mu.RUnlock()
	if ok || id == "" {
		return a, ok
	}
	if err := r.reload(); err != nil {
		return App{}, false
	}
	r.mu.RLock()
	a, ok = r.byID[id]
	r.mu.RUnlock()
	return a, ok
}

// List returns every app.
func (r *Registry) List() []App {
	_ = r.reload()
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]App, 0, len(r.byID))
	for _, a := range r.byID {
		out = append(out, a)
	}
	return out
}

// Create adds a new application id for (org, env) to the registry of data
// directory dir, creating the directory if needed. It holds a file lock so
// concurrent creates do not lose each other's ids.
func Create(dir, org, env string) (App, error) {
	if err := CheckNames(org, env); err != nil {
		return App{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return App{}, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "apps.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return App{}, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return App{}, fmt.Errorf("lock apps: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	path := filepath.Join(dir, FileName)
	f, err := jsonfile.Read[file](path)
	if err != nil {
		return App{}, err
	}
	a := App{ID: NewID(org, env), Org: org, Env: env, Created: time.Now().UTC().Truncate(time.Second)}
	f.Apps = append(f.Apps, a)
	if err := jsonfile.Write(path, f); err != nil {
		return App{}, err
	}
	return a, nil
}

// CheckNames says what is wrong with an org or env name, or nil.
func CheckNames(org, env string) error {
	if !ValidName(org) {
		return fmt.Errorf("org %q: use 1-64 letters, digits, '.', '_' or '-'", org)
	}
	if !ValidName(env) {
		return fmt.Errorf("env %q: use 1-64 letters, digits, '.', '_' or '-'", env)
	}
	return nil
}

// NewID returns a new application id. Its form follows Moesif's own ids (a
// base64url JSON header naming the app, a dot, then random base64url), so
// SDKs that check the form of the id before they start accept it.
func NewID(org, env string) string {
	head, _ := json.Marshal(map[string]string{"app": org + ":" + env, "ver": "2.1"})
	rnd := make([]byte, 24)
	if _, err := rand.Read(rnd); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(head) + "." + base64.RawURLEncoding.EncodeToString(rnd)
}
