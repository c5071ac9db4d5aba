package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/meter"
)

// Profiles finds the profile of a customer (apimeter.Store).
type Profiles interface {
	Profile(ctx context.Context, org, env, kind, id string) (apimeter.Profile, error)
}

// Config wires a Biller. Usage and Dialect are required.
type Config struct {
	Usage   meter.Store
	Dialect meter.Dialect
	// Profiles finds customers' Stripe ids; nil means none has one.
	Profiles Profiles
	// Secret derives each org's statement signing key; empty means
	// statements are not offered.
	Secret []byte
}

// Biller answers exports and statements and keeps the Stripe ledger of
// one store.
type Biller struct{ cfg Config }

// New returns a Biller for cfg.
func New(cfg Config) *Biller { return &Biller{cfg: cfg} }

// Line is one customer's usage of one meter in one period.
type Line struct {
	Customer string  `json:"customer"`
	Meter    string  `json:"meter"`
	Period   string  `json:"period"`
	Value    float64 `json:"value"`
	Events   int64   `json:"events"`
	// For a push: the meter's Stripe event name, the customer's Stripe
	// id, and what the ledger holds (see Pusher).
	StripeEventName  string  `json:"stripeEventName,omitempty"`
	StripeCustomerID string  `json:"stripeCustomerId,omitempty"`
	Pushed           float64 `json:"pushed,omitempty"`
	Intended         float64 `json:"intended,omitempty"`
}

// Export lists, per customer and meter of (org, env), the value of the
// meter over per and the number of events counted, ordered by meter and
// customer. The value is meter.Query's over [per.From, per.To) grouped
// by subject; the count is of the events meter.CountedEvents lists
// (meter.CountBySubject).
func (b *Biller) Export(ctx context.Context, org, env string, per Period) ([]Line, error) {
	ms, err := b.cfg.Usage.Meters(ctx, org, env)
	if err != nil {
		return nil, err
	}
	out := []Line{}
	for i := range ms {
		m := &ms[i]
		if m.EventType == LedgerType {
			continue
		}
		lines, err := b.meterLines(ctx, m, per)
		if err != nil {
			return nil, err
		}
		out = append(out, lines...)
	}
	return out, nil
}

func params(per Period, subjects ...string) meter.Params {
	return meter.Params{From: per.From, To: per.To, TimeZone: timeUTC, GroupBy: []string{"subject"}, Subjects: subjects}
}

func (b *Biller) meterLines(ctx context.Context, m *meter.Meter, per Period) ([]Line, error) {
	res, err := meter.Query(ctx, b.cfg.Usage.DB(), b.cfg.Dialect, m, params(per))
	if err != nil {
		return nil, err
	}
	counts, err := meter.CountBySubject(ctx, b.cfg.Usage.DB(), b.cfg.Dialect, m, params(per))
	if err != nil {
		return nil, err
	}
	var out []Line
	for _, r := range res.Data {
		if r.Subject == nil {
			continue
		}
		out = append(out, Line{Customer: *r.Subject, Meter: m.Slug, Period: per.Name, Value: r.Value,
			Events: counts[*r.Subject], StripeEventName: m.StripeEventName})
	}
	slices.SortFunc(out, func(a, b Line) int { return strings.Compare(a.Customer, b.Customer) })
	return out, nil
}

// PushPlan is Export with, for the meters that name a Stripe event, each
// customer's Stripe id and the ledger's state.
func (b *Biller) PushPlan(ctx context.Context, org, env string, per Period) ([]Line, error) {
	lines, err := b.Export(ctx, org, env, per)
	if err != nil {
		return nil, err
	}
	led, err := b.ledger(ctx, org, env, per)
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	var out []Line
	for _, l := range lines {
		if l.StripeEventName == "" {
			continue
		}
		id, ok := ids[l.Customer]
		if !ok {
			if id, err = b.stripeID(ctx, org, env, l.Customer); err != nil {
				return nil, err
			}
			ids[l.Customer] = id
		}
		l.StripeCustomerID = id
		st := led[[2]string{l.Meter, l.Customer}]
		l.Pushed, l.Intended = st.sent, st.intent
		delete(led, [2]string{l.Meter, l.Customer})
		out = append(out, l)
	}
	return out, nil
}

// stripeID is the stripe_customer_id in the metadata of the customer's
// company profile, else of its user profile; "" when neither has one.
func (b *Biller) stripeID(ctx context.Context, org, env, customer string) (string, error) {
	if b.cfg.Profiles == nil {
		return "", nil
	}
	for _, kind := range []string{"company", "user"} {
		p, err := b.cfg.Profiles.Profile(ctx, org, env, kind, customer)
		if errors.Is(err, apimeter.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("profile of %s: %w", customer, err)
		}
		var body struct {
			Metadata map[string]any `json:"metadata"`
		}
		if json.Unmarshal(p.Body, &body) == nil {
			if s, ok := body.Metadata["stripe_customer_id"].(string); ok && s != "" {
				return s, nil
			}
		}
	}
	return "", nil
}
