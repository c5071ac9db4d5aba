package loadrun

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/httpmsg"
)

// ConsumeFaultConfig configures a fault run of the Kafka / Event Hubs
// consumer: calls written to a topic as Azure API Management's
// log-to-eventhub policy writes them (requests on partition 0, responses
// on partition 1, one application/http message each), read by an
// `apimeter consume --collector` child process that is SIGKILLed and
// restarted mid-stream, and stored by an `apimeter serve` child.
type ConsumeFaultConfig struct {
	Bin      string        // the apimeter binary
	Env      []string      // extra environment of the child processes
	Duration time.Duration // how long calls are written; the kills are spread over it
	Rate     int           // calls written a second
	Kills    int           // times the consumer is SIGKILLed and started again
	Down     time.Duration // how long the consumer stays dead after each kill
	// SessionTimeout is the consumer group's session timeout: a killed
	// member holds its partitions that long, so it bounds each outage.
	SessionTimeout time.Duration
	// Request and Response are the call every record pair repeats, each
	// with an id of its own (the policy's own messages, such as
	// testdata/apim's); nil: a GET and its 200 as the policy writes them.
	Request, Response *httpmsg.Message
	Out               io.Writer // progress lines
}

// ConsumeFaultReport is what a consumer fault run found.
type ConsumeFaultReport struct {
	// Acknowledged are the calls whose two records the broker took;
	// ProduceErrors the writes it refused (the policy's side of the hub).
	Acknowledged, ProduceErrors int
	// PresentOnce, Lost and Doubled compare the acknowledged calls with the
	// events stored (the event id is the message id).
	PresentOnce, Lost, Doubled int
	// Duplicates is what the collector dropped as already stored: the
	// records a killed consumer had read but not committed, read again.
	Duplicates float64
	Kills      int
	// Phases hold, by the phase a call was written in, the time from its
	// request record written to its event stored (the collector's ingest
	// time): what a dashboard reader waits during each fault.
	Phases []PhaseReport
	Took   time.Duration
}

// ConsumeFaults runs the consumer fault scenario and reads the events back.
func ConsumeFaults(ctx context.Context, c ConsumeFaultConfig) (ConsumeFaultReport, error) {
	started := time.Now()
	logf := progress(c.Out, started)
	var rep ConsumeFaultReport
	ws, err := newWorkspace("apimeter-kafkafaults-")
	if err != nil {
		return rep, err
	}
	defer ws.done()
	app, err := apps.Create(ws.data, "faults", "prod")
	if err != nil {
		return rep, err
	}

	// The hub: a kfake cluster in this process, one topic of two
	// partitions as the policy writes them.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "apim"))
	if err != nil {
		return rep, err
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("apim"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return rep, err
	}
	defer producer.Close()

	col := &Server{Bin: c.Bin, Args: []string{"--data", ws.data, "--stats-quota", "0"}, Addr: ws.addr, Log: ws.log, Env: c.Env}
	if err := col.Start(ctx); err != nil {
		return rep, fmt.Errorf("%w (log: %s)", err, tail(ws.log.Name()))
	}
	colStopped := false
	defer func() {
		if !colStopped {
			col.Kill9()
		}
	}()
	logf("collector on %s, kafka (kfake) on %s", ws.addr, brokers)

	clog, err := os.Create(filepath.Join(ws.dir, "consume.log"))
	if err != nil {
		return rep, err
	}
	defer clog.Close()
	sessionTimeout := c.SessionTimeout
	if sessionTimeout <= 0 {
		sessionTimeout = 6 * time.Second
	}
	type proc struct {
		cmd  *exec.Cmd
		done chan error
	}
	var cons *proc
	startConsumer := func() error {
		cmd := exec.Command(c.Bin, "consume", "--brokers", brokers, "--topic", "apim", "--group", "faults",
			"--collector", "http://"+ws.addr, "--app-id", app.ID, "--pair-ttl", "2s",
			"--session-timeout", sessionTimeout.String(), "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = clog, clog
		cmd.Env = append(os.Environ(), c.Env...)
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start consume: %w", err)
		}
		p := &proc{cmd: cmd, done: make(chan error, 1)}
		go func() { p.done <- cmd.Wait() }()
		cons = p
		return nil
	}
	defer func() {
		if cons != nil {
			cons.cmd.Process.Kill()
			<-cons.done
		}
	}()
	if err := startConsumer(); err != nil {
		return rep, err
	}

	// The feed: Rate calls a second, in slices of 50 ms, each call a
	// request and a response record stamped when written.
	ph := newPhases("steady")
	feed, stopFeed := context.WithTimeout(ctx, c.Duration)
	defer stopFeed()
	var (
		mu      sync.Mutex
		acked   []string
		written = map[string]time.Time{}
		wg      sync.WaitGroup
	)
	enc := httpmsg.Encoder{}
	reqT, respT := c.Request, c.Response
	if reqT == nil {
		reqT = &httpmsg.Message{Kind: httpmsg.Request, Method: "GET", Target: "/accounts/abcdef/message",
			Header: apimeter.Headers{{Name: "Host", Value: "api.contoso.example"}, {Name: "Accept", Value: "application/json"}}}
	}
	if respT == nil {
		respT = &httpmsg.Message{Kind: httpmsg.Response, Status: 200, Reason: "OK",
			Header: apimeter.Headers{{Name: "Content-Type", Value: "application/json; charset=utf-8"}}, Body: []byte(`{"my_object":{"my_message":"Hello World!"}}`)}
	}
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		per := max(1, c.Rate/20)
		for n := 0; feed.Err() == nil; {
			select {
			case <-feed.Done():
				return
			case <-tick.C:
			}
			now := time.Now()
			var rs []*kgo.Record
			ids := make([]string, 0, per)
			for range per {
				id := "k" + strconv.Itoa(n)
				n++
				req, resp := *reqT, *respT
				req.ID, resp.ID = id, id
				rs = append(rs, &kgo.Record{Partition: 0, Value: enc.Append(nil, &req), Timestamp: now},
					&kgo.Record{Partition: 1, Value: enc.Append(nil, &resp), Timestamp: now.Add(5 * time.Millisecond)})
				ids = append(ids, id)
			}
			// A write that fails is the policy's loss, not the consumer's:
			// counted, and its calls not expected.
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			results := producer.ProduceSync(pctx, rs...)
			cancel()
			failed := map[string]bool{}
			for i, r := range results {
				if r.Err != nil {
					failed[ids[i/2]] = true
				}
			}
			mu.Lock()
			rep.ProduceErrors += len(failed)
			for _, id := range ids {
				if !failed[id] {
					acked = append(acked, id)
					written[id] = now
				}
			}
			mu.Unlock()
		}
	})

	every := c.Duration / time.Duration(c.Kills+1)
	for k := 1; k <= c.Kills; k++ {
		if !sleep(feed, every) {
			break
		}
		ph.next(fmt.Sprintf("consumer SIGKILLed (%d of %d), %s down", k, c.Kills, c.Down))
		cons.cmd.Process.Signal(syscall.SIGKILL)
		<-cons.done
		cons = nil
		rep.Kills++
		logf("consumer SIGKILLed (%d of %d)", k, c.Kills)
		time.Sleep(c.Down)
		if err := startConsumer(); err != nil {
			return rep, err
		}
		ph.next(fmt.Sprintf("consumer restarted (%d of %d)", k, c.Kills))
		logf("consumer restarted")
	}
	<-feed.Done()
	wg.Wait()
	ph.next("after the feed")
	logf("feed over: %d calls acknowledged by the broker; waiting until the collector has them", len(acked))

	// Wait, bounded, until the collector has stored as many events as were
	// acknowledged (duplicates are not counted as stored).
	base := "http://" + ws.addr + "/metrics"
	drain := time.Now().Add(90*time.Second + sessionTimeout)
	for time.Now().Before(drain) {
		if storedTotal(ctx, base) >= float64(len(acked)) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// And a moment for late duplicates: none may be stored again.
	time.Sleep(time.Second)
	rep.Duplicates = scrapeLabelled(ctx, base, `apimeter_events_total{result="duplicate"}`)
	cons.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-cons.done:
		if err != nil {
			logf("consume after SIGTERM: %v (log: %s)", err, tail(clog.Name()))
		}
	case <-time.After(30 * time.Second):
		cons.cmd.Process.Kill()
		<-cons.done
	}
	cons = nil
	colStopped = true
	if err := col.Stop(); err != nil {
		return rep, err
	}
	logf("consumer and collector stopped; reading the events back")

	got, err := storedWithTimes(ctx, filepath.Join(ws.data, "events.duckdb"), "k")
	if err != nil {
		return rep, err
	}
	rep.Acknowledged = len(acked)
	for _, id := range acked {
		s := got[id]
		switch len(s) {
		case 0:
			rep.Lost++
		case 1:
			rep.PresentOnce++
		default:
			rep.Doubled++
		}
		if len(s) > 0 {
			at := written[id]
			first := slices.MinFunc(s, func(a, b time.Time) int { return a.Compare(b) })
			ph.add(0, ph.phaseAt(at), 200, true, first.Sub(at))
		}
	}
	rep.Phases = ph.reports(0)
	rep.Took = time.Since(started)
	return rep, nil
}

// storedWithTimes reads the ingest times of each stored event whose id
// starts with prefix.
func storedWithTimes(ctx context.Context, path, prefix string) (map[string][]time.Time, error) {
	db, err := sql.Open("duckdb", path+"?access_mode=read_only")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT id, ingested_at FROM events WHERE starts_with(id, ?)`, prefix)
	if err != nil {
		return nil, fmt.Errorf("read events back: %w", err)
	}
	defer rows.Close()
	out := map[string][]time.Time{}
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out[id] = append(out[id], at)
	}
	return out, rows.Err()
}

// storedTotal is the collector's count of events stored, from /metrics.
func storedTotal(ctx context.Context, url string) float64 {
	return scrapeLabelled(ctx, url, `apimeter_events_total{result="stored"}`)
}

// scrapeLabelled reads one series, labels and all, from the Prometheus
// metrics at url; 0 when absent.
func scrapeLabelled(ctx context.Context, url, series string) float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// Print writes the report as docs/reliability.md records it.
func (r ConsumeFaultReport) Print(w io.Writer) {
	fmt.Fprintf(w, "run: %s, %d SIGKILLs of the consumer\n", r.Took.Round(time.Second), r.Kills)
	fmt.Fprintf(w, "calls acknowledged by the broker: %d (writes refused: %d)\n", r.Acknowledged, r.ProduceErrors)
	fmt.Fprintf(w, "stored once: %d, lost: %d, doubled: %d; redelivered and dropped as duplicates by the collector: %.0f\n", r.PresentOnce, r.Lost, r.Doubled, r.Duplicates)
	fmt.Fprintf(w, "time from a call's request record written to its event stored, by the phase it was written in:\n")
	printPhases(w, "calls", r.Phases, nil, false)
}
