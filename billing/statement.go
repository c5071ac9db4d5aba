package billing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apimeter/apimeter/meter"
)

// MaxStatementEvents bounds the events of one statement (memory: they are
// sorted for the digest and listed in the customer's export).
const MaxStatementEvents = 1_000_000

// ErrNoSecret is returned for a statement on a server without a billing
// secret.
var ErrNoSecret = errors.New("statements need a signing secret: start the server with --billing-secret-file")

// Statement is what a customer was billed for one meter in one period,
// signed by the org: the value, the number of events and a digest of
// their ids, which the listed events recompute.
type Statement struct {
	Org         string  `json:"org"`
	Env         string  `json:"env"`
	Meter       string  `json:"meter"`
	Customer    string  `json:"customer"`
	Period      string  `json:"period"`
	Aggregation string  `json:"aggregation"`
	Value       float64 `json:"value"`
	Events      int64   `json:"events"`
	// Digest is the SHA-256 (hex) of the events' [source, id] pairs,
	// sorted by source then id (bytewise), each written as a JSON array
	// and a newline: ["test","ev-1"]\n. An API call's source is "".
	Digest string `json:"digest"`
	// PublicKey is the org's Ed25519 key (base64) and Signature its
	// signature (base64) of SignedText.
	PublicKey string `json:"publicKey"`
	Signature string `json:"signature"`
}

// SignedText is what a statement's signature covers: its fields, one a
// line, after the line apimeter-statement-v1; the value is written in
// the shortest form that reads back the same (Go's strconv 'g', -1).
func (s *Statement) SignedText() []byte {
	return []byte(strings.Join([]string{"apimeter-statement-v1", s.Org, s.Env, s.Meter, s.Customer, s.Period,
		s.Aggregation, strconv.FormatFloat(s.Value, 'g', -1, 64), strconv.FormatInt(s.Events, 10), s.Digest}, "\n"))
}

// StatementEvent is one event of a statement, as the customer sees it.
type StatementEvent struct {
	Source string    `json:"source"`
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Value  float64   `json:"value"`
	Text   string    `json:"text,omitempty"` // UNIQUE_COUNT: the value counted
}

// CustomerExport is a statement with the events it counts: what a
// customer is given, and what apimeter billing verify reads.
type CustomerExport struct {
	Statement Statement        `json:"statement"`
	Events    []StatementEvent `json:"events"`
}

// orgKey is org's statement signing key, derived from the secret.
func (b *Biller) orgKey(org string) (ed25519.PrivateKey, error) {
	if len(b.cfg.Secret) == 0 {
		return nil, ErrNoSecret
	}
	mac := hmac.New(sha256.New, b.cfg.Secret)
	mac.Write([]byte("apimeter billing statement key v1\x00" + org))
	return ed25519.NewKeyFromSeed(mac.Sum(nil)), nil
}

// PublicKey is org's statement key (base64), which customers may pin.
func (b *Biller) PublicKey(org string) (string, error) {
	k, err := b.orgKey(org)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey)), nil
}

// Statement returns the signed statement of customer for meter slug in
// per, with its events.
func (b *Biller) Statement(ctx context.Context, org, env, slug, customer string, per Period) (CustomerExport, error) {
	key, err := b.orgKey(org)
	if err != nil {
		return CustomerExport{}, err
	}
	ms, err := b.cfg.Usage.Meters(ctx, org, env)
	if err != nil {
		return CustomerExport{}, err
	}
	i := slices.IndexFunc(ms, func(m meter.Meter) bool { return m.Slug == slug })
	if i < 0 || ms[i].EventType == LedgerType {
		return CustomerExport{}, meter.ErrNotFound
	}
	m := &ms[i]
	s := Statement{Org: org, Env: env, Meter: slug, Customer: customer, Period: per.Name, Aggregation: m.Aggregation}
	res, err := meter.Query(ctx, b.cfg.Usage.DB(), b.cfg.Dialect, m, params(per, customer))
	if err != nil {
		return CustomerExport{}, err
	}
	if len(res.Data) == 1 {
		s.Value = res.Data[0].Value
	}
	evs := []StatementEvent{}
	err = meter.CountedEvents(ctx, b.cfg.Usage.DB(), b.cfg.Dialect, m, params(per, customer), func(e meter.CountedEvent) error {
		if len(evs) == MaxStatementEvents {
			return &meter.FieldError{Field: "customer", Message: fmt.Sprintf("more than %d events in the period: a statement holds at most that many", MaxStatementEvents)}
		}
		evs = append(evs, StatementEvent{Source: e.Source, ID: e.ID, Time: e.Time, Value: e.Value, Text: e.Text})
		return nil
	})
	if err != nil {
		return CustomerExport{}, err
	}
	sortEvents(evs)
	s.Events = int64(len(evs))
	s.Digest = Digest(evs)
	s.PublicKey = base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	s.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, s.SignedText()))
	return CustomerExport{Statement: s, Events: evs}, nil
}

func sortEvents(evs []StatementEvent) {
	slices.SortFunc(evs, func(a, b StatementEvent) int {
		if c := strings.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Digest is the statement digest of evs, which must be sorted by source
// then id (see Statement.Digest).
func Digest(evs []StatementEvent) string {
	h := sha256.New()
	for _, e := range evs {
		b, _ := json.Marshal([2]string{e.Source, e.ID})
		h.Write(b)
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Verify recomputes a customer export's statement from its events and
// checks its signature; it returns what differs, or nothing when all
// matches. pinned, when not empty, is the org's public key (base64) the
// customer holds: a statement signed by another key fails.
func Verify(ce CustomerExport, pinned string) []string {
	var diffs []string
	s := ce.Statement
	pub, err := base64.StdEncoding.DecodeString(s.PublicKey)
	sig, err2 := base64.StdEncoding.DecodeString(s.Signature)
	switch {
	case err != nil || len(pub) != ed25519.PublicKeySize:
		diffs = append(diffs, "statement: publicKey is not a base64 Ed25519 key")
	case pinned != "" && pinned != s.PublicKey:
		diffs = append(diffs, "statement: signed with key "+s.PublicKey+", not the org's key "+pinned)
	case err2 != nil || !ed25519.Verify(pub, s.SignedText(), sig):
		diffs = append(diffs, "statement: the signature does not match its fields (the statement was altered or signed by another key)")
	}
	evs := slices.Clone(ce.Events)
	sortEvents(evs)
	per, perr := ParsePeriod(s.Period)
	for i, e := range evs {
		if i > 0 && evs[i-1].Source == e.Source && evs[i-1].ID == e.ID {
			diffs = append(diffs, fmt.Sprintf("event %s listed twice", name(e)))
		}
		if perr == nil && (e.Time.Before(per.From) || !e.Time.Before(per.To)) {
			diffs = append(diffs, fmt.Sprintf("event %s at %s is outside period %s", name(e), e.Time.Format(time.RFC3339Nano), s.Period))
		}
	}
	n := int64(len(evs))
	digest := Digest(evs)
	switch {
	case n > s.Events:
		diffs = append(diffs, fmt.Sprintf("%d event(s) added: the export lists %d events, the statement counts %d", n-s.Events, n, s.Events))
	case n < s.Events:
		diffs = append(diffs, fmt.Sprintf("%d event(s) removed: the export lists %d events, the statement counts %d", s.Events-n, n, s.Events))
	}
	if digest != s.Digest {
		what := "the event ids differ from those the statement counted"
		if n == s.Events {
			what = "an event was replaced by another (same count, different ids)"
		}
		diffs = append(diffs, fmt.Sprintf("digest %s, the statement's %s: %s", digest, s.Digest, what))
	}
	if v, ok := recompute(s.Aggregation, evs, s.Value); !ok {
		what := "value"
		if n == s.Events && digest == s.Digest {
			what = "an event's value changed: value"
		}
		diffs = append(diffs, fmt.Sprintf("%s %s recomputed from the events, the statement's %s", what,
			strconv.FormatFloat(v, 'g', -1, 64), strconv.FormatFloat(s.Value, 'g', -1, 64)))
	}
	return diffs
}

func name(e StatementEvent) string {
	if e.Source == "" {
		return strconv.Quote(e.ID)
	}
	return strconv.Quote(e.ID) + " (source " + strconv.Quote(e.Source) + ")"
}

// recompute is the meter's aggregation over evs, and whether it matches
// want (sums in another order differ in the last bits: 1e-9 relative).
func recompute(agg string, evs []StatementEvent, want float64) (float64, bool) {
	eq := func(v float64) bool { return math.Abs(v-want) <= 1e-9*math.Max(1, math.Abs(want)) }
	if len(evs) == 0 {
		return 0, want == 0
	}
	var v float64
	switch agg {
	case meter.Sum, meter.Count, meter.Avg:
		for _, e := range evs {
			v += e.Value
		}
		if agg == meter.Avg {
			v /= float64(len(evs))
		}
	case meter.Min, meter.Max:
		v = evs[0].Value
		for _, e := range evs[1:] {
			if agg == meter.Min {
				v = math.Min(v, e.Value)
			} else {
				v = math.Max(v, e.Value)
			}
		}
	case meter.UniqueCount:
		seen := map[string]bool{}
		for _, e := range evs {
			seen[e.Text] = true
		}
		v = float64(len(seen))
	case meter.Latest:
		// Of events in the same millisecond the meter takes any one.
		last := slices.MaxFunc(evs, func(a, b StatementEvent) int { return a.Time.Compare(b.Time) }).Time
		for _, e := range evs {
			if e.Time.Equal(last) {
				v = e.Value
				if eq(v) {
					return v, true
				}
			}
		}
	default:
		return math.NaN(), false
	}
	return v, eq(v)
}

// ReadCustomerExport reads a customer export (JSON) strictly.
func ReadCustomerExport(b []byte) (CustomerExport, error) {
	var ce CustomerExport
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ce); err != nil {
		return ce, fmt.Errorf("customer export: %w", err)
	}
	return ce, nil
}

// Diff names the events of got that differ from those of ref, by source
// and id: added (in got only), removed (in ref only) or changed (time or
// value). apimeter billing verify --against uses it to name the events
// behind a statement that does not match.
func Diff(ref, got []StatementEvent) []string {
	type key struct{ source, id string }
	idx := make(map[key]StatementEvent, len(ref))
	for _, e := range ref {
		idx[key{e.Source, e.ID}] = e
	}
	var out []string
	g := slices.Clone(got)
	sortEvents(g)
	for _, e := range g {
		k := key{e.Source, e.ID}
		r, ok := idx[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("event %s added", name(e)))
			continue
		case !r.Time.Equal(e.Time):
			out = append(out, fmt.Sprintf("event %s changed: time %s, was %s", name(e), e.Time.Format(time.RFC3339Nano), r.Time.Format(time.RFC3339Nano)))
		case r.Value != e.Value || r.Text != e.Text:
			out = append(out, fmt.Sprintf("event %s changed: value %s, was %s", name(e), valueText(e), valueText(r)))
		}
		delete(idx, k)
	}
	rest := slices.Collect(maps.Values(idx))
	sortEvents(rest)
	for _, e := range rest {
		out = append(out, fmt.Sprintf("event %s removed", name(e)))
	}
	return out
}

func valueText(e StatementEvent) string {
	if e.Text != "" {
		return strconv.Quote(e.Text)
	}
	return strconv.FormatFloat(e.Value, 'g', -1, 64)
}
