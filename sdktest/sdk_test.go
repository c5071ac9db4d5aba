package sdktest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

// Bounds: how long an app may take to start, and how long its events may
// take to arrive (both SDKs flush within about a second).
const (
	startTimeout   = 20 * time.Second
	arrivalTimeout = 30 * time.Second
	buildTimeout   = 45 * time.Second
)

// Secrets the test sends through the apps; none may reach the database.
const (
	jwtSecret    = "my_super_secret"
	cookieSecret = "cookie-secret-4d1f"
	apiKeySecret = "header-key-secret-9b2e"
	querySecret  = "query-key-secret-7c3a"
)

// sdk is one Moesif SDK under test: how to get its app ready (or why it
// cannot run here) and the command that runs it.
type sdk struct {
	name         string
	setCookie    string // the Set-Cookie value its app answers with
	metadataName string // what its app puts in metadata.sdk
	source       string // the SDK's packages, as pinned in its folder
	// reportsBatches says the app prints {"sdk":"events",...} once the SDK
	// has handled the collector's answer to a batch.
	reportsBatches bool
	prepare        func(t *testing.T) *exec.Cmd
}

// record, when set, makes TestMoesifSDKs write what each SDK sent to
// apimeter to testdata/recorded-<sdk>.json, for TestRecordedSDKTraffic:
//
//	go test ./sdktest -run TestMoesifSDKs -record
var record = flag.Bool("record", false, "write the SDKs' collector requests to testdata/recorded-<sdk>.json")

func TestMoesifSDKs(t *testing.T) {
	for _, s := range []sdk{
		{name: "node", setCookie: "node-set-cookie-secret", metadataName: "moesif-nodejs",
			source: "moesif-nodejs 3.11.0 with moesifapi 3.1.3 (node/package-lock.json)", reportsBatches: true, prepare: prepareNode},
		{name: "go", setCookie: "go-set-cookie-secret", metadataName: "moesifmiddleware-go",
			source: "moesifmiddleware-go v1.2.9 with moesifapi-go v1.1.5 (go/go.mod)", prepare: prepareGo},
	} {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			runSDK(t, s)
		})
	}
}

func prepareNode(t *testing.T) *exec.Cmd {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on the PATH; install Node.js and run `npm ci --prefix sdktest/node` (.ci/run does)")
	}
	for _, pkg := range []string{"moesif-nodejs", "express"} {
		if _, err := os.Stat(filepath.Join("node", "node_modules", pkg, "package.json")); err != nil {
			t.Skipf("sdktest/node/node_modules/%s is absent; run `npm ci --prefix sdktest/node` (.ci/run does)", pkg)
		}
	}
	cmd := exec.Command(node, "app.js")
	cmd.Dir = "node"
	return cmd
}

// prepareGo builds the Go app (go build, then run the binary, rather than
// go run, so that stopping it stops the app itself).
func prepareGo(t *testing.T) *exec.Cmd {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on the PATH")
	}
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	goCmd := func(args ...string) ([]byte, error) {
		c := exec.CommandContext(ctx, goBin, args...)
		c.Dir = "go"
		c.Env = append(os.Environ(), "GOWORK=off")
		return c.CombinedOutput()
	}
	if out, err := goCmd("mod", "download"); err != nil {
		t.Skipf("Moesif's Go SDK (github.com/moesif/moesifmiddleware-go) could not be downloaded, so it cannot be tested here: %v\n%s", err, out)
	}
	bin := filepath.Join(t.TempDir(), "sdkapp")
	if out, err := goCmd("build", "-mod=readonly", "-buildvcs=false", "-o", bin, "."); err != nil {
		t.Fatalf("building sdktest/go: %v\n%s", err, out)
	}
	return exec.Command(bin)
}

// collector is apimeter, in process, with a log of what it answered.
type collector struct {
	url   string
	store *duckdb.Store
	app   apps.App
	hits  *hitLog
}

func startCollector(t *testing.T, env string) *collector {
	t.Helper()
	dir := t.TempDir()
	st, err := duckdb.Open(t.Context(), filepath.Join(dir, "events.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	a, err := apps.Create(dir, "acme", env)
	if err != nil {
		t.Fatalf("create app: %v", err)
	}
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatalf("open apps: %v", err)
	}
	srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1)})
	hits := &hitLog{record: *record}
	hs := httptest.NewServer(hits.wrap(srv))
	t.Cleanup(func() {
		hs.Close()
		st.Close()
	})
	return &collector{url: hs.URL, store: st, app: a, hits: hits}
}

type hit struct {
	Method, Path, UserAgent, Encoding string
	Status                            int
	// ContentType and Body (gzip-decoded) are kept only when recording.
	ContentType string          `json:",omitempty"`
	Body        json.RawMessage `json:",omitempty"`
}

// hitLog records every request apimeter answers, with its status.
type hitLog struct {
	record bool
	mu     sync.Mutex
	hits   []hit
}

func (l *hitLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if l.record && r.Body != nil {
			raw, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(raw))
			body = raw
			if r.Header.Get("Content-Encoding") == "gzip" {
				if zr, err := gzip.NewReader(bytes.NewReader(raw)); err == nil {
					body, _ = io.ReadAll(zr)
				}
			}
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		hh := hit{Method: r.Method, Path: r.URL.Path, UserAgent: r.UserAgent(),
			Encoding: r.Header.Get("Content-Encoding"), Status: sw.status}
		if l.record {
			hh.ContentType = r.Header.Get("Content-Type")
			if json.Valid(body) {
				hh.Body = body
			}
		}
		l.mu.Lock()
		l.hits = append(l.hits, hh)
		l.mu.Unlock()
	})
}

func (l *hitLog) all() []hit {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.hits)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// app is a running SDK app: its base URL and what it printed.
type app struct {
	url    string
	mu     sync.Mutex
	lines  []string
	stderr bytes.Buffer
}

func (a *app) output() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.lines)
}

func startApp(t *testing.T, cmd *exec.Cmd, c *collector) *app {
	t.Helper()
	cmd.Env = append(os.Environ(),
		"PORT=0",
		"MOESIF_APPLICATION_ID="+c.app.ID,
		"MOESIF_BASE_URI="+c.url,
		"JWT_SECRET="+jwtSecret,
	)
	a := &app{}
	cmd.Stderr = &lockedWriter{mu: &a.mu, w: &a.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	listening := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.lines = append(a.lines, line)
			a.mu.Unlock()
			var l struct{ Listening int }
			if json.Unmarshal([]byte(line), &l) == nil && l.Listening > 0 {
				listening <- l.Listening
			}
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", filepath.Base(cmd.Path), strings.Join(a.output(), "\n"), a.stderrText())
		}
	})
	select {
	case port := <-listening:
		a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	case <-exited:
		t.Fatalf("%s exited before listening:\n%s", cmd.Path, a.stderrText())
	case <-time.After(startTimeout):
		t.Fatalf("%s did not listen within %v", cmd.Path, startTimeout)
	}
	return a
}

func (a *app) stderrText() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// hs256 signs claims as a JWT with secret.
func hs256(claims map[string]any, secret string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// call is one request sent to an SDK app and what apimeter must store.
type call struct {
	name       string
	method     string
	path       string // with query
	body       string
	header     map[string]string
	wantStatus int
	wantUser   string
	wantComp   string
	wantPath   string
	wantBody   string // a fragment of the stored request body
}

// guideJWT is the counting guide's token: HS256, sub 513 (the user), name, iat.
func guideJWT() string {
	return hs256(map[string]any{"sub": "513", "name": "John Doe", "iat": 1516239022}, jwtSecret)
}

// guideCalls are the calls made to each SDK app, after the counting guide.
func guideCalls(jwt string) []call {
	bearer := map[string]string{"Authorization": "Bearer " + jwt}
	return []call{
		{
			name: "seed call: JWT user 513, company from the URL, cookie and api keys", method: "GET",
			path: "/accounts/abcdef/message?api_key=" + querySecret,
			header: map[string]string{"Authorization": "Bearer " + jwt, "Cookie": "sid=" + cookieSecret,
				"X-Api-Key": apiKeySecret},
			wantStatus: 200, wantUser: "513", wantComp: "abcdef", wantPath: "/accounts/abcdef/message",
		},
		{
			name: "POST with a JSON body", method: "POST", path: "/accounts/abcdef/items",
			body: `{"sku":"x-1","qty":2}`, header: bearer,
			wantStatus: 201, wantUser: "513", wantComp: "abcdef", wantPath: "/accounts/abcdef/items", wantBody: `"sku"`,
		},
		{
			name: "anonymous 404", method: "GET", path: "/missing",
			wantStatus: 404, wantPath: "/missing",
		},
		// runSDK sends the last call only once the others are stored, so
		// that it follows the SDK's first batch: from then on the SDK must
		// not fetch /v1/config again (apimeter's etags agree; see
		// checkAnswers).
		{
			name: "second round, after the first batch", method: "GET", path: "/accounts/abcdef/message", header: bearer,
			wantStatus: 200, wantUser: "513", wantComp: "abcdef", wantPath: "/accounts/abcdef/message",
		},
	}
}

func runSDK(t *testing.T, s sdk) {
	cmd := s.prepare(t)
	c := startCollector(t, s.name)
	a := startApp(t, cmd, c)

	jwt := guideJWT()
	calls := guideCalls(jwt)
	txIDs := make([]string, len(calls))
	for i, cl := range calls {
		if i == len(calls)-1 {
			waitEvents(t, c, i)
			if s.reportsBatches {
				// Stored is not yet answered: wait until the SDK has read
				// the answer (and its etag) before the next call.
				waitOutput(t, a, `"sdk":"events"`)
			}
		}
		txIDs[i] = send(t, a, cl)
	}

	events := waitEvents(t, c, len(calls))
	byID := map[string]apimeter.Event{}
	for _, e := range events {
		byID[e.ID] = e
	}
	for i, cl := range calls {
		t.Run(cl.name, func(t *testing.T) {
			e, ok := byID[txIDs[i]]
			if !ok {
				t.Fatalf("no event stored with the transaction id %q the SDK gave the call; stored ids: %v", txIDs[i], ids(events))
			}
			checkEvent(t, e, cl, s, jwt)
			if want := strings.TrimPrefix(a.url, "http://") + cl.wantPath; !strings.Contains(e.URI, want) {
				t.Errorf("uri = %q, want it to contain %q", e.URI, want)
			}
		})
	}

	waitProfiles(t, c)
	checkNoSecrets(t, c.store.DB(), secrets(jwt, s))
	checkAnswers(t, c.hits.all(), a)
	if *record && !t.Failed() {
		writeRecording(t, s, c.hits.all())
	}
}

// secrets are the values the calls to an SDK app carry that must never
// be stored.
func secrets(jwt string, s sdk) []string {
	return []string{jwt, strings.Split(jwt, ".")[2], cookieSecret, apiKeySecret, querySecret, s.setCookie}
}

// checkEvent compares a stored event with what its call must produce.
func checkEvent(t *testing.T, e apimeter.Event, cl call, s sdk, jwt string) {
	t.Helper()
	checks := []struct {
		field     string
		got, want any
	}{
		{"method", e.Method, cl.method},
		{"path", e.Path, cl.wantPath},
		{"status", e.Status, cl.wantStatus},
		{"user_id", e.UserID, cl.wantUser},
		{"company_id", e.CompanyID, cl.wantComp},
		{"client ip", e.ClientIP, "127.0.0.1"},
		{"direction", e.Direction, apimeter.Incoming},
		{"weight", e.Weight, int64(1)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %#v, want %#v", ch.field, ch.got, ch.want)
		}
	}
	if !strings.HasSuffix(e.Path, cl.wantPath) || !strings.Contains(e.URI, "://127.0.0.1:") {
		t.Errorf("uri = %q, want http://127.0.0.1:PORT%s", e.URI, cl.wantPath)
	}
	if cl.wantBody != "" && !strings.Contains(e.RequestBody.Text, cl.wantBody) {
		t.Errorf("request body = %q, want it to contain %s", e.RequestBody.Text, cl.wantBody)
	}
	if e.ResponseBody.Text == "" {
		t.Errorf("response body not stored")
	}
	if !bytes.Contains(e.Metadata, []byte(s.metadataName)) {
		t.Errorf("metadata = %s, want the app's {\"sdk\":%q}", e.Metadata, s.metadataName)
	}
	if cl.header["Authorization"] != "" {
		if want := scrub.Fingerprint(jwt); e.SessionToken != want {
			t.Errorf("session token = %q, want the JWT's fingerprint %q", e.SessionToken, want)
		}
		if got := e.RequestHeaders.Get("Authorization"); !strings.HasPrefix(got, "fp_") {
			t.Errorf("stored Authorization header = %q, want a fingerprint", got)
		}
	}
}

// recording is what one SDK sent to apimeter in a run of TestMoesifSDKs.
type recording struct {
	SDK      string `json:"sdk"`
	Source   string `json:"source"`
	Note     string `json:"note"`
	Requests []hit  `json:"requests"`
}

func recordingPath(name string) string {
	return filepath.Join("testdata", "recorded-"+name+".json")
}

func writeRecording(t *testing.T, s sdk, hits []hit) {
	t.Helper()
	b, err := json.MarshalIndent(recording{SDK: s.name, Source: s.source,
		Note:     "written by go test ./sdktest -run TestMoesifSDKs -record; bodies gzip-decoded; the secrets in them are the test's own",
		Requests: hits}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordingPath(s.name), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", recordingPath(s.name))
}

// TestRecordedSDKTraffic replays what the real SDKs sent in a recorded
// run of TestMoesifSDKs, with their headers and JSON (gzip where they
// gzipped; the recording is indented, the replay compact as sent), so that
// their wire format stays covered where an SDK cannot run (the Go module
// proxy does not serve Moesif's Go SDK). A second replay must store
// nothing new: the SDKs' transaction ids make ingest idempotent.
func TestRecordedSDKTraffic(t *testing.T) {
	jwt := guideJWT()
	calls := guideCalls(jwt)
	for _, s := range []sdk{
		{name: "node", setCookie: "node-set-cookie-secret", metadataName: "moesif-nodejs"},
		{name: "go", setCookie: "go-set-cookie-secret", metadataName: "moesifmiddleware-go"},
	} {
		t.Run(s.name, func(t *testing.T) {
			b, err := os.ReadFile(recordingPath(s.name))
			if err != nil {
				t.Fatalf("read the recording: %v", err)
			}
			var rec recording
			if err := json.Unmarshal(b, &rec); err != nil {
				t.Fatalf("%s: %v", recordingPath(s.name), err)
			}
			c := startCollector(t, "replay-"+s.name)
			var posted int
			for round := 1; round <= 2; round++ {
				for _, h := range rec.Requests {
					if status := replay(t, c, h); status != http.StatusOK {
						t.Fatalf("round %d: %s %s (as sent by %s) answered %d, want 200", round, h.Method, h.Path, h.UserAgent, status)
					}
					if round == 1 && h.Method == http.MethodPost && strings.HasPrefix(h.Path, "/v1/events") {
						var batch []json.RawMessage
						if json.Unmarshal(h.Body, &batch) != nil {
							batch = []json.RawMessage{h.Body}
						}
						posted += len(batch)
					}
				}
			}
			if posted != len(calls) {
				t.Fatalf("the recording holds %d events, want one per call (%d)", posted, len(calls))
			}
			events, err := c.store.Events(t.Context(), apimeter.EventFilter{Org: c.app.Org, Env: c.app.Env, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != len(calls) {
				t.Fatalf("%d events stored after two replays, want %d: %v", len(events), len(calls), ids(events))
			}
			for _, e := range events {
				i := slices.IndexFunc(calls, func(cl call) bool { return cl.method == e.Method && cl.wantPath == e.Path })
				if i < 0 {
					t.Errorf("stored event %s %s matches no call", e.Method, e.URI)
					continue
				}
				t.Run(calls[i].name, func(t *testing.T) { checkEvent(t, e, calls[i], s, jwt) })
			}
			waitProfiles(t, c)
			checkNoSecrets(t, c.store.DB(), secrets(jwt, s))
		})
	}
}

// replay sends one recorded request to c as the SDK sent it, under c's
// application id, and returns the status.
func replay(t *testing.T, c *collector, h hit) int {
	t.Helper()
	var body io.Reader
	if len(h.Body) > 0 {
		var compact bytes.Buffer
		if err := json.Compact(&compact, h.Body); err != nil {
			t.Fatalf("recorded body of %s %s: %v", h.Method, h.Path, err)
		}
		raw := compact.Bytes()
		if h.Encoding == "gzip" {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(raw)
			zw.Close()
			raw = buf.Bytes()
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), h.Method, c.url+h.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(server.AppIDHeader, c.app.ID)
	req.Header.Set("User-Agent", h.UserAgent)
	if h.ContentType != "" {
		req.Header.Set("Content-Type", h.ContentType)
	}
	if h.Encoding != "" {
		req.Header.Set("Content-Encoding", h.Encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// send makes one call to the app and returns the transaction id the SDK
// gave it.
func send(t *testing.T, a *app, cl call) string {
	t.Helper()
	var body io.Reader
	if cl.body != "" {
		body = strings.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(t.Context(), cl.method, a.url+cl.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if cl.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range cl.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", cl.name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != cl.wantStatus {
		t.Fatalf("%s: the app answered %d, want %d", cl.name, resp.StatusCode, cl.wantStatus)
	}
	id := resp.Header.Get(moesif.TransactionIDHeader)
	if id == "" {
		t.Fatalf("%s: the SDK set no %s on the response", cl.name, moesif.TransactionIDHeader)
	}
	return id
}

func ids(events []apimeter.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// waitEvents polls the store until n events are there, or fails after
// arrivalTimeout.
func waitEvents(t *testing.T, c *collector, n int) []apimeter.Event {
	t.Helper()
	deadline := time.Now().Add(arrivalTimeout)
	for {
		events, err := c.store.Events(t.Context(), apimeter.EventFilter{Org: c.app.Org, Env: c.app.Env, Limit: 100})
		if err != nil {
			t.Fatalf("read events: %v", err)
		}
		if len(events) >= n {
			if len(events) > n {
				t.Errorf("%d events stored for %d calls: %v", len(events), n, ids(events))
			}
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events arrived within %v; collector answers: %+v", len(events), n, arrivalTimeout, c.hits.all())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOutput waits until the app has printed a line containing fragment.
func waitOutput(t *testing.T, a *app, fragment string) {
	t.Helper()
	deadline := time.Now().Add(arrivalTimeout)
	for !slices.ContainsFunc(a.output(), func(l string) bool { return strings.Contains(l, fragment) }) {
		if time.Now().After(deadline) {
			t.Fatalf("the app did not print %s within %v", fragment, arrivalTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitProfiles waits for the user and the company the app sent at start.
func waitProfiles(t *testing.T, c *collector) {
	t.Helper()
	for _, want := range []struct{ kind, id, company, fragment string }{
		{"user", "513", "abcdef", "John Doe"},
		{"company", "abcdef", "", "acme.example"},
	} {
		deadline := time.Now().Add(arrivalTimeout)
		for {
			p, err := c.store.Profile(t.Context(), c.app.Org, c.app.Env, want.kind, want.id)
			if err == nil {
				if p.CompanyID != want.company || !bytes.Contains(p.Body, []byte(want.fragment)) {
					t.Errorf("%s %s stored as company %q, %s; want company %q and %q in it", want.kind, want.id, p.CompanyID, p.Body, want.company, want.fragment)
				}
				var body struct {
					ModifiedTime *string `json:"modified_time"`
				}
				json.Unmarshal(p.Body, &body)
				if p.ModifiedTime.IsZero() || body.ModifiedTime == nil {
					t.Errorf("%s %s has no modified time: %v, %s", want.kind, want.id, p.ModifiedTime, p.Body)
				}
				break
			}
			if !errors.Is(err, apimeter.ErrNotFound) {
				t.Fatalf("read %s %s: %v", want.kind, want.id, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %s did not arrive within %v; collector answers: %+v", want.kind, want.id, arrivalTimeout, c.hits.all())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// checkNoSecrets reads every row of every table as text and fails if a
// secret is in any of them.
func checkNoSecrets(t *testing.T, db *sql.DB, secrets []string) {
	t.Helper()
	tables, err := db.QueryContext(t.Context(), `SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var names []string
	for tables.Next() {
		var n string
		if err := tables.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	tables.Close()
	if !slices.Contains(names, "events") {
		t.Fatalf("no events table among %v", names)
	}
	for _, table := range names {
		rows, err := db.QueryContext(t.Context(), `SELECT * FROM "`+table+`"`)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("scan %s: %v", table, err)
			}
			for i, v := range vals {
				text := fmt.Sprint(v)
				if b, ok := v.([]byte); ok {
					text = string(b)
				}
				for _, s := range secrets {
					if strings.Contains(text, s) {
						t.Errorf("secret %q stored in %s.%s", s, table, cols[i])
					}
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		rows.Close()
	}
}

// checkAnswers fails if apimeter answered the SDK with an error status or
// the SDK reported a failure, and checks it used the batch endpoint.
func checkAnswers(t *testing.T, hits []hit, a *app) {
	t.Helper()
	var batches int
	for _, h := range hits {
		if h.Status >= 400 {
			t.Errorf("apimeter answered the SDK's %s %s (User-Agent %q) with %d", h.Method, h.Path, h.UserAgent, h.Status)
		}
		if h.Method == http.MethodPost && h.Path == "/v1/events/batch" {
			batches++
		}
		// A config etag on the batch answer that differed from /v1/config's
		// would make the SDK fetch the config again.
		if batches > 0 && h.Path == "/v1/config" {
			t.Errorf("the SDK fetched /v1/config again after a batch: apimeter's etags disagree")
		}
	}
	if batches == 0 {
		t.Errorf("the SDK never posted to /v1/events/batch; it called: %+v", hits)
	}
	t.Logf("collector calls: %+v", hits)
	for _, line := range a.output() {
		var r struct {
			SDK string  `json:"sdk"`
			Err *string `json:"err"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.SDK != "" && r.Err != nil {
			t.Errorf("the SDK reported a failure: %s", line)
		}
	}
}
