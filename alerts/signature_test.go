package alerts_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/alerts"
)

// verifyAsDocumented checks a webhook as docs/alerts.md's "Verifying the
// signature" says a receiver should, written from that text alone (it
// does not use the package's signing code): split the header on "," and
// each part on the first "=", HMAC-SHA256 keyed with the secret over
// t + "." + body, hex, constant-time compare, timestamp within 5 minutes.
func verifyAsDocumented(secret, header string, body []byte, now time.Time) bool {
	parts := map[string]string{}
	for _, p := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return false
		}
		parts[k] = v
	}
	t, sig := parts["t"], parts["v1"]
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "."))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return false
	}
	ts, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return false
	}
	d := now.Sub(time.Unix(ts, 0))
	return d <= 5*time.Minute && d >= -5*time.Minute
}

// TestDocumentedSignatureExample: the worked example in docs/alerts.md
// verifies by the documented steps.
func TestDocumentedSignatureExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("secret `([^`]+)`, the timestamp\\s+`(\\d+)` and the body\\s+`([^`]+)`, the\\s+header is\\s+```\\s+Apimeter-Signature: (\\S+)").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/alerts.md has no worked signature example in the expected words")
	}
	secret, ts, body, header := string(m[1]), string(m[2]), m[3], string(m[4])
	at, _ := strconv.ParseInt(ts, 10, 64)
	if !verifyAsDocumented(secret, header, body, time.Unix(at, 0)) {
		t.Fatalf("the documented example %s does not verify", header)
	}
	if verifyAsDocumented(secret, header, append(body, ' '), time.Unix(at, 0)) {
		t.Fatal("a changed body verifies")
	}
}

// TestWebhookSignatureVerifies: a real notification, received over HTTP,
// verifies by the documented steps with the channel's secret, and not
// with another secret or another body.
func TestWebhookSignatureVerifies(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		t0 := base()
		r := newRig(t, b, recv, t0, alerts.Rule{ID: "calls", Org: "acme", Env: "prod", Metric: "sum(message_count)", Window: d("5m"), Threshold: 0})
		b.add(t, call{at: t0})
		r.tick(t, t0.Add(time.Second))
		recv.mu.Lock()
		defer recv.mu.Unlock()
		if len(recv.got) != 1 {
			t.Fatalf("received %d notifications, want 1", len(recv.got))
		}
		g := recv.got[0]
		header := g.header.Get("Apimeter-Signature")
		if !verifyAsDocumented(secret, header, g.body, time.Now()) {
			t.Fatalf("signature %q does not verify over the body received", header)
		}
		if verifyAsDocumented("whsec_another_secret_0000", header, g.body, time.Now()) {
			t.Error("verifies with another secret")
		}
		if verifyAsDocumented(secret, header, append([]byte(" "), g.body...), time.Now()) {
			t.Error("verifies with another body")
		}
		if id := g.header.Get("Apimeter-Notification-Id"); id == "" || id != g.n.ID {
			t.Errorf("Apimeter-Notification-Id %q, body id %q: want the same", id, g.n.ID)
		}
	})
}
