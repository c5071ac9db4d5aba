package loadrun

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// poisonBodies are batches a careless or hostile sender posts: each must be
// refused (or stored cleaned) without failing anyone else's batch.
func poisonBodies() []struct {
	name string
	body []byte
	gzip bool
} {
	ev := func(extra string) string {
		return `{"request":{"time":"2026-11-24T10:00:00Z","uri":"https://x.example/a","verb":"GET"},"response":{"time":"2026-11-24T10:00:00.010Z","status":200}` + extra + `}`
	}
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write([]byte("["))
	for i := 0; i < 200000; i++ {
		if i > 0 {
			zw.Write([]byte(","))
		}
		zw.Write([]byte("{}"))
	}
	zw.Write([]byte("]"))
	zw.Close()
	return []struct {
		name string
		body []byte
		gzip bool
	}{
		{"invalid UTF-8 in metadata", []byte("[" + ev(`,"metadata":{"note":"bad \xff\xfe byte"}`) + "]"), false},
		{"lone surrogate in metadata", []byte("[" + ev(`,"metadata":{"note":"\ud800"}`) + "]"), false},
		{"invalid UTF-8 in a header", []byte(`[{"request":{"time":"2026-11-24T10:00:00Z","uri":"https://x.example/a","verb":"GET","headers":{"X-A":"\xf0"}},"response":{"time":"2026-11-24T10:00:00.010Z","status":200}}]`), false},
		{"status null", []byte(`[{"request":{"time":"2026-11-24T10:00:00Z","uri":"https://x.example/a","verb":"GET"},"response":{"status":null}}]`), false},
		{"metadata not an object", []byte("[" + ev(`,"metadata":"x"`) + "]"), false},
		{"deep nesting", []byte("[" + ev(`,"metadata":{"a":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000)+`}`) + "]"), false},
		{"gzip bomb of 200,000 {}", bomb.Bytes(), true},
	}
}

// poisoner posts poison batches in a loop and counts the answers.
type poisoner struct {
	url, appID string
	mu         sync.Mutex
	answers    map[string]map[int]int // kind -> status -> count
}

func (p *poisoner) run(ctx context.Context) {
	p.answers = map[string]map[int]int{}
	client := &http.Client{Timeout: 20 * time.Second}
	bodies := poisonBodies()
	for i := 0; ctx.Err() == nil; i++ {
		b := bodies[i%len(bodies)]
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/v1/events/batch", bytes.NewReader(b.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Moesif-Application-Id", p.appID)
		if b.gzip {
			req.Header.Set("Content-Encoding", "gzip")
		}
		code := 0
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
		}
		p.mu.Lock()
		if p.answers[b.name] == nil {
			p.answers[b.name] = map[int]int{}
		}
		p.answers[b.name][code]++
		p.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// slowFlood holds conns connections that each send a batch's body one byte
// every two seconds, reconnecting when the server cuts them; it records how
// long the server held each: from the connection made to the moment the
// server's answer or close reached a reader blocked on the connection (a
// reader polling between writes would add its own interval, and under load
// a short read deadline can expire before the read is tried).
type slowFlood struct {
	addr, appID string
	conns       int
	cut         atomic.Int64
	answered    atomic.Int64 // cut with an answer (an error status) before the close
	// starting is set while the server is down or starting after a kill:
	// a connection made then waits in the listen backlog until the server
	// accepts it, and its read timeout starts only then.
	starting atomic.Bool
	mu       sync.Mutex
	held     []time.Duration
	// heldStarting are the held times of connections made while starting.
	heldStarting []time.Duration
}

func (f *slowFlood) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range f.conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				f.one(ctx)
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
}

func (f *slowFlood) one(ctx context.Context) {
	c, err := net.DialTimeout("tcp", f.addr, 2*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	start := time.Now()
	duringStart := f.starting.Load()
	type end struct {
		at       time.Time
		answered bool
	}
	ended := make(chan end, 1)
	go func() {
		var b [512]byte
		n, _ := c.Read(b[:])
		ended <- end{time.Now(), n > 0}
	}()
	fmt.Fprintf(c, "POST /v1/events/batch HTTP/1.1\r\nHost: %s\r\nX-Moesif-Application-Id: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[", f.addr, f.appID)
	for {
		select {
		case <-ctx.Done():
			c.Close() // ends the reader
			<-ended
			return
		case e := <-ended:
			f.cut.Add(1)
			if e.answered {
				f.answered.Add(1)
			}
			f.mu.Lock()
			if duringStart {
				f.heldStarting = append(f.heldStarting, e.at.Sub(start))
			} else {
				f.held = append(f.held, e.at.Sub(start))
			}
			f.mu.Unlock()
			return
		case <-time.After(2 * time.Second):
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			c.Write([]byte(" ")) // an error here is the cut, which the reader sees too
		}
	}
}
