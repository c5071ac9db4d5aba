package billing

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Source is what a Pusher reads and records: a Biller in process, or a
// running server (Client).
type Source interface {
	PushPlan(ctx context.Context, org, env string, per Period) ([]Line, error)
	Record(ctx context.Context, org, env string, per Period, e Entry) error
}

// DefaultStripeAPIBase is Stripe's API.
const DefaultStripeAPIBase = "https://api.stripe.com"

// Pusher sends the usage of a period to Stripe Billing as meter events,
// each customer's meter once: it sends only the difference between the
// value now and what its ledger says was sent.
//
// Each send is written ahead as an intent (cumulative value to reach, with
// its identifier) and confirmed as sent after Stripe's 2xx. A push that
// finds an intent beyond what was sent (a crash, a kill or an error before
// the confirmation) first resends that same meter event, with the same
// identifier and value: if Stripe had it, Stripe drops the copy (it keeps
// identifiers for at least 24 hours: resume a failed push within that
// window); if not, it is billed now. Late events then go out as a new
// difference.
type Pusher struct {
	Source  Source
	APIBase string // DefaultStripeAPIBase when empty
	APIKey  string
	Client  *http.Client
	Now     func() time.Time
}

// PushResult says what a push did.
type PushResult struct {
	Sent      int      // meter events Stripe accepted
	Resent    int      // of which pending intents sent again
	UpToDate  int      // lines with nothing new
	NoStripe  []string // customers without a stripe_customer_id
	Decreased []string // meter/customer whose value fell below what was sent (not sent: needs a correction in Stripe)
}

// Push pushes the usage of (org, env) in per.
func (p *Pusher) Push(ctx context.Context, org, env string, per Period) (PushResult, error) {
	var res PushResult
	lines, err := p.Source.PushPlan(ctx, org, env, per)
	if err != nil {
		return res, err
	}
	for _, l := range lines {
		if l.StripeCustomerID == "" {
			res.NoStripe = append(res.NoStripe, l.Customer)
			continue
		}
		if l.Intended > l.Pushed {
			if err := p.send(ctx, org, env, per, l, l.Pushed, l.Intended, false); err != nil {
				return res, err
			}
			res.Sent++
			res.Resent++
			l.Pushed = l.Intended
		}
		switch {
		case l.Value > l.Pushed:
			if err := p.send(ctx, org, env, per, l, l.Pushed, l.Value, true); err != nil {
				return res, err
			}
			res.Sent++
		case l.Value < l.Pushed:
			res.Decreased = append(res.Decreased, l.Meter+"/"+l.Customer)
		default:
			res.UpToDate++
		}
	}
	return res, nil
}

func (p *Pusher) send(ctx context.Context, org, env string, per Period, l Line, from, to float64, intent bool) error {
	id := Identifier(org, env, l.Meter, l.Customer, per.Name, from, to)
	e := Entry{Meter: l.Meter, Customer: l.Customer, Period: per.Name, Cumulative: to, Identifier: id}
	if intent {
		e.State = StateIntent
		if err := p.Source.Record(ctx, org, env, per, e); err != nil {
			return err
		}
	}
	if err := p.meterEvent(ctx, l, per, id, to-from); err != nil {
		return fmt.Errorf("push %s of %s: %w", l.Meter, l.Customer, err)
	}
	e.State = StateSent
	return p.Source.Record(ctx, org, env, per, e)
}

// timestamp is when a meter event is said to happen: now, within the
// period (Stripe files it in the invoice period holding it).
func (p *Pusher) timestamp(per Period) time.Time {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	t := now()
	if !t.Before(per.To) {
		t = per.To.Add(-time.Second)
	}
	if t.Before(per.From) {
		t = per.From
	}
	return t
}

// meterEvent sends POST /v1/billing/meter_events.
func (p *Pusher) meterEvent(ctx context.Context, l Line, per Period, id string, value float64) error {
	base := p.APIBase
	if base == "" {
		base = DefaultStripeAPIBase
	}
	form := url.Values{
		"event_name":                  {l.StripeEventName},
		"payload[stripe_customer_id]": {l.StripeCustomerID},
		"payload[value]":              {fmtNum(value)},
		"identifier":                  {id},
		"timestamp":                   {strconv.FormatInt(p.timestamp(per).Unix(), 10)},
	}
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(base, "/")+"/v1/billing/meter_events", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(p.APIKey, "")
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("stripe answered %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}
