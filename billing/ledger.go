package billing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/apimeter/apimeter/meter"
)

// LedgerType is the usage event type of the Stripe ledger's entries. The
// ledger is kept as usage events of the store (both stores keep them
// durably, deduplicated by id, and share them among servers), read back
// through a meter query: MAX of the cumulative value per customer, meter,
// period and state.
const LedgerType = "apimeter.billing.ledger"

const ledgerSource = "apimeter-billing"

// Ledger states: an intent is written before a meter event is sent, sent
// once Stripe answered 2xx.
const (
	StateIntent = "intent"
	StateSent   = "sent"
)

var timeUTC = time.UTC

var ledgerMeter = meter.Meter{
	Slug: "apimeter-billing-ledger", EventType: LedgerType, Aggregation: meter.Max, ValueProperty: "$.cumulative",
	GroupBy: map[string]string{"meter": "$.meter", "period": "$.period", "state": "$.state"},
}

// Entry is one ledger entry: the cumulative value of a customer's meter in
// a period that was (about to be) sent to Stripe.
type Entry struct {
	Meter      string  `json:"meter"`
	Customer   string  `json:"customer"`
	Period     string  `json:"period"`
	State      string  `json:"state"`
	Cumulative float64 `json:"cumulative"`
	Identifier string  `json:"identifier"`
}

type ledgerState struct{ sent, intent float64 }

// ledger reads what was pushed in per, by (meter, customer).
func (b *Biller) ledger(ctx context.Context, org, env string, per Period) (map[[2]string]ledgerState, error) {
	m := ledgerMeter
	m.Org, m.Env = org, env
	p := params(per)
	p.GroupBy = []string{"subject", "meter", "state"}
	p.FilterGroupBy = map[string][]string{"period": {per.Name}}
	res, err := meter.Query(ctx, b.cfg.Usage.DB(), b.cfg.Dialect, &m, p)
	if err != nil {
		return nil, fmt.Errorf("billing ledger: %w", err)
	}
	out := map[[2]string]ledgerState{}
	for _, r := range res.Data {
		if r.Subject == nil || r.GroupBy["meter"] == nil || r.GroupBy["state"] == nil {
			continue
		}
		k := [2]string{*r.GroupBy["meter"], *r.Subject}
		st := out[k]
		switch *r.GroupBy["state"] {
		case StateSent:
			st.sent = r.Value
		case StateIntent:
			st.intent = r.Value
		}
		out[k] = st
	}
	return out, nil
}

// Record writes a ledger entry durably. Entries are stamped with their
// period's start, so that the ledger of a period is read from that
// period's rows.
func (b *Biller) Record(ctx context.Context, org, env string, per Period, e Entry) error {
	if e.State != StateIntent && e.State != StateSent {
		return &meter.FieldError{Field: "state", Message: fmt.Sprintf("%q: want %s or %s", e.State, StateIntent, StateSent)}
	}
	if e.Meter == "" || e.Customer == "" || e.Identifier == "" {
		return &meter.FieldError{Field: "body", Message: "a ledger entry needs meter, customer and identifier"}
	}
	body, err := json.Marshal(map[string]any{
		"specversion": "1.0", "id": e.Identifier + "/" + e.State, "source": ledgerSource, "type": LedgerType,
		"subject": e.Customer, "time": per.From.Format(time.RFC3339Nano),
		"data": map[string]any{"meter": e.Meter, "period": per.Name, "state": e.State, "cumulative": e.Cumulative},
	})
	if err != nil {
		return err
	}
	evs, err := meter.Decode(meter.ContentTypeEvent, body, org, env, time.Now(), meter.Limits{})
	if err != nil {
		return fmt.Errorf("ledger entry: %w", err)
	}
	if _, err := b.cfg.Usage.AppendUsage(ctx, evs); err != nil {
		return fmt.Errorf("ledger entry: %w", err)
	}
	return nil
}

// Identifier is the Stripe meter event identifier of the push that takes
// a customer's meter in a period from cumulative value from to to: the
// same push always has the same identifier, so that Stripe drops a resent
// one (within its identifier window).
func Identifier(org, env, meterSlug, customer, period string, from, to float64) string {
	h := sha256.New()
	for _, s := range []string{org, env, meterSlug, customer, period, fmtNum(from), fmtNum(to)} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return "apm_" + hex.EncodeToString(h.Sum(nil)[:20])
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
