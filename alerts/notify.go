package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Webhook headers. The signature is Stripe's scheme: t is the Unix time
// in seconds the body was signed at, v1 the hex HMAC-SHA256, keyed by the
// channel's secret, of t, a dot and the body's bytes.
const (
	SignatureHeader = "Apimeter-Signature"
	// IDHeader carries the notification's id: the same on every retry and
	// after a restart, so that a receiver can drop a repeat.
	IDHeader = "Apimeter-Notification-Id"
)

// Sign returns the value of SignatureHeader for body signed with secret
// at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Notification is the JSON body of a webhook.
type Notification struct {
	ID    string `json:"id"`
	Event string `json:"event"` // firing or resolved
	Rule  struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Org    string `json:"org"`
		Env    string `json:"env"`
		Kind   string `json:"kind"`
		Metric string `json:"metric"`
		Op     string `json:"op"`
		Window string `json:"window,omitempty"`
		Per    string `json:"per,omitempty"`
	} `json:"rule"`
	// Customer is the user, company or API key of a per-customer rule.
	Customer  string   `json:"customer,omitempty"`
	Value     *float64 `json:"value"`
	Threshold float64  `json:"threshold"`
	Volume    float64  `json:"volume"`
	// Since is when the condition began to hold (firing) or when it
	// cleared (resolved); At is when the evaluation saw the change.
	Since     time.Time `json:"since"`
	At        time.Time `json:"at"`
	Dashboard string    `json:"dashboard_url"`
}

func newNotification(r *Rule, t Transition, dashboard string) Notification {
	n := Notification{ID: t.ID, Event: t.Event, Customer: t.Customer, Value: t.Value, Threshold: t.Threshold, Volume: t.Volume, Since: t.Since, At: t.At}
	n.Rule.ID, n.Rule.Name, n.Rule.Org, n.Rule.Env, n.Rule.Kind, n.Rule.Metric, n.Rule.Op, n.Rule.Per = r.ID, r.Name, r.Org, r.Env, r.Kind, r.Metric, r.Op, r.Per
	if n.Rule.Name == "" {
		n.Rule.Name = r.ID
	}
	if r.Kind == KindAbsence {
		n.Rule.Metric, n.Rule.Op = "sum(message_count)", "absent"
	}
	if r.Kind == KindQuota {
		n.Rule.Metric, n.Rule.Op = "sum(message_count)", "at_least"
	}
	if r.Window > 0 {
		n.Rule.Window = r.Window.D().String()
	}
	n.Dashboard = dashboardLink(dashboard, r, t.Customer)
	return n
}

// dashboardLink is the view that shows an instance: the customer's page
// for a user or company, else the rule on the Alerts page.
func dashboardLink(base string, r *Rule, customer string) string {
	q := url.Values{"org": {r.Org}, "env": {r.Env}}
	frag := "/alerts?rule=" + url.QueryEscape(r.ID)
	if customer != "" && (r.Per == PerUser || r.Per == PerCompany) {
		frag = "/customer?kind=" + r.Per + "&id=" + url.QueryEscape(customer)
	}
	return base + "/ui/?" + q.Encode() + "#" + frag
}

// slackText is the message of a Slack incoming webhook.
func slackText(n Notification) string {
	who := ""
	if n.Customer != "" {
		who = " for " + n.Rule.Per + " " + n.Customer
	}
	val := "no data"
	if n.Value != nil {
		val = strconv.FormatFloat(*n.Value, 'g', 6, 64)
	}
	head := ":rotating_light: *FIRING*"
	if n.Event == EventResolved {
		head = ":white_check_mark: *RESOLVED*"
	}
	cond := fmt.Sprintf("%s %s %s", n.Rule.Metric, n.Rule.Op, strconv.FormatFloat(n.Threshold, 'g', 6, 64))
	if n.Rule.Window != "" {
		cond += " over " + n.Rule.Window
	}
	return fmt.Sprintf("%s %s%s (%s/%s): value %s, threshold %s (%s). <%s|Open in apimeter>",
		head, n.Rule.Name, who, n.Rule.Org, n.Rule.Env, val, strconv.FormatFloat(n.Threshold, 'g', 6, 64), cond, n.Dashboard)
}

// NotifierConfig configures deliveries.
type NotifierConfig struct {
	Store Store
	// Client sends the requests; nil means one with a 10 s timeout.
	Client *http.Client
	// MaxAttempts is the tries per notification and channel (default 8);
	// Backoff the wait after the first failure (default 1 s), doubled
	// after each, up to MaxBackoff (default 5 min).
	MaxAttempts int
	Backoff     time.Duration
	MaxBackoff  time.Duration
	// Workers send concurrently (default 4).
	Workers int
	Logger  *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
}

// Notifier delivers notifications with retries and logs every attempt.
type Notifier struct {
	cfg   NotifierConfig
	queue chan *job
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]bool // notification id + channel id
	waiters  []chan struct{}
}

type job struct {
	n       Notification
	body    []byte
	ch      Channel
	attempt int
}

func (j *job) key() string { return j.n.ID + "/" + j.ch.id() }

// NewNotifier starts cfg.Workers senders; Close stops them.
func NewNotifier(cfg NotifierConfig) *Notifier {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	n := &Notifier{cfg: cfg, queue: make(chan *job, 1024), ctx: ctx, stop: stop, inflight: map[string]bool{}}
	for range cfg.Workers {
		n.wg.Add(1)
		go n.worker()
	}
	return n
}

// Close stops sending; what was not delivered stays in the store's log as
// not delivered and is sent again by the next process (Evaluator loads it).
func (n *Notifier) Close() {
	n.stop()
	n.wg.Wait()
}

// Send queues notification no to every channel given, except those
// skip says are done. It does not wait for the deliveries.
func (n *Notifier) Send(no Notification, channels []Channel, skip map[string]bool) {
	body, err := json.Marshal(no)
	if err != nil {
		n.cfg.Logger.Error("alerts: encode notification", "err", err)
		return
	}
	for _, ch := range channels {
		if skip[ch.id()] {
			continue
		}
		j := &job{n: no, body: body, ch: ch}
		n.mu.Lock()
		if n.inflight[j.key()] {
			n.mu.Unlock()
			continue
		}
		n.inflight[j.key()] = true
		n.mu.Unlock()
		go n.put(j)
	}
}

// put hands j to a worker unless the notifier is stopping.
func (n *Notifier) put(j *job) {
	select {
	case n.queue <- j:
	case <-n.ctx.Done():
		n.finish(j)
	}
}

func (n *Notifier) finish(j *job) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.inflight, j.key())
	if len(n.inflight) == 0 {
		for _, w := range n.waiters {
			close(w)
		}
		n.waiters = nil
	}
}

// Wait returns once no delivery is queued, in flight or waiting to be
// retried (or when ctx ends).
func (n *Notifier) Wait(ctx context.Context) error {
	n.mu.Lock()
	if len(n.inflight) == 0 {
		n.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	n.waiters = append(n.waiters, w)
	n.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Notifier) worker() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case j := <-n.queue:
			n.deliver(j)
		}
	}
}

func (n *Notifier) deliver(j *job) {
	j.attempt++
	start := time.Now()
	status, err := n.post(j)
	d := Delivery{
		ID: uuid.NewString(), Notification: j.n.ID, Org: j.n.Rule.Org, Env: j.n.Rule.Env, RuleID: j.n.Rule.ID,
		Customer: j.n.Customer, Event: j.n.Event, Channel: j.ch.id(), ChannelType: j.ch.Type,
		Attempt: j.attempt, At: n.cfg.Now().UTC(), Status: status,
	}
	retry := false
	switch {
	case err == nil && status >= 200 && status < 300:
		d.Outcome = Delivered
	case err != nil || status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		if err != nil {
			d.Error = err.Error()
		} else {
			d.Error = "HTTP " + strconv.Itoa(status)
		}
		retry = j.attempt < n.cfg.MaxAttempts
		d.Outcome = Failed
		if retry {
			d.Outcome = Retry
		}
	default:
		d.Error = "HTTP " + strconv.Itoa(status) + ": the receiver refused it; not retried"
		d.Outcome = Failed
	}
	// The log is written before the next attempt, so that a restart knows
	// what was delivered. If the process dies between the receiver's 2xx
	// and this write, the next process sends it again, with the same id.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := n.cfg.Store.AddDelivery(ctx, d); err != nil {
		n.cfg.Logger.Error("alerts: log delivery", "rule", d.RuleID, "notification", d.Notification, "err", err)
	}
	cancel()
	// Counted once logged: a count seen from outside is one a restart
	// knows of.
	if n.cfg.Metrics != nil {
		n.cfg.Metrics.deliveries.WithLabelValues(j.ch.Type, d.Outcome).Inc()
		n.cfg.Metrics.deliverySeconds.WithLabelValues(j.ch.Type).Observe(time.Since(start).Seconds())
	}
	if d.Outcome == Failed {
		n.cfg.Logger.Warn("alerts: notification not delivered", "rule", d.RuleID, "customer", d.Customer, "event", d.Event, "channel", j.ch.Type, "attempts", j.attempt, "err", d.Error)
	}
	if !retry {
		n.finish(j)
		return
	}
	wait := n.cfg.Backoff << (j.attempt - 1)
	if wait > n.cfg.MaxBackoff || wait <= 0 {
		wait = n.cfg.MaxBackoff
	}
	t := time.NewTimer(wait)
	go func() {
		select {
		case <-t.C:
			n.put(j)
		case <-n.ctx.Done():
			t.Stop()
			n.finish(j)
		}
	}()
}

func (n *Notifier) post(j *job) (int, error) {
	body := j.body
	if j.ch.Type == Slack {
		var err error
		body, err = json.Marshal(map[string]string{"text": slackText(j.n)})
		if err != nil {
			return 0, err
		}
	}
	req, err := http.NewRequestWithContext(n.ctx, http.MethodPost, j.ch.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "apimeter-alerts")
	if j.ch.Type == Webhook {
		req.Header.Set(IDHeader, j.n.ID)
		req.Header.Set(SignatureHeader, Sign(j.ch.Secret, n.cfg.Now(), body))
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
