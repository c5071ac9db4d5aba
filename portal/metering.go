package portal

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apimeter/apimeter/billing"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/server"
)

// Metering answers the meters and statements pages from the usage store
// (package meter) and its Biller (package billing): it is both the Meters
// and the Statements seam.
//
// The subject a customer's meters are read for is the token's customer id
// (a company token: the company id; a user token: the user id), and only
// it: no parameter reaches the subject. A meter over API calls counts a
// call for its company when it has one, else for its user, so a user
// token of a user in a company sees none of its calls on such a meter;
// those are on its company's token.
type Metering struct {
	Usage   meter.Store
	Dialect meter.Dialect
	// Biller signs the statements; nil (or one without a secret) means
	// no statements.
	Biller *billing.Biller
	// Now is the clock of the statements' default period; nil: time.Now.
	Now func() time.Time
}

// MeterValue is one meter's value for the customer over [From, To).
type MeterValue struct {
	Slug        string  `json:"slug"`
	Name        string  `json:"name,omitempty"`
	Description string  `json:"description,omitempty"`
	EventType   string  `json:"eventType"`
	Aggregation string  `json:"aggregation"`
	Value       float64 `json:"value"`
}

// MetersJSON is the answer of GET /portal/api/v1/meters.
type MetersJSON struct {
	Customer Customer     `json:"customer"`
	Subject  string       `json:"subject"`
	From     time.Time    `json:"from"`
	To       time.Time    `json:"to"`
	Meters   []MeterValue `json:"meters"`
}

// StatementsJSON is the answer of GET /portal/api/v1/statements: one
// signed customer export per meter, each what apimeter billing verify
// reads.
type StatementsJSON struct {
	Customer   Customer                 `json:"customer"`
	Subject    string                   `json:"subject"`
	Period     string                   `json:"period"`
	PublicKey  string                   `json:"publicKey"`
	Statements []billing.CustomerExport `json:"statements"`
}

// visible lists the meters of (org, env) that names allows (all when
// empty), by slug; billing's own ledger is never one.
func (m *Metering) visible(ctx context.Context, org, env string, names []string) ([]meter.Meter, error) {
	ms, err := m.Usage.Meters(ctx, org, env)
	if err != nil {
		return nil, err
	}
	ms = slices.DeleteFunc(ms, func(x meter.Meter) bool {
		return x.EventType == billing.LedgerType || len(names) > 0 && !slices.Contains(names, x.Slug)
	})
	slices.SortFunc(ms, func(a, b meter.Meter) int { return strings.Compare(a.Slug, b.Slug) })
	return ms, nil
}

// CustomerMeters answers each visible meter's value for c over [from, to):
// meter.Query with the subject set to c.ID.
func (m *Metering) CustomerMeters(ctx context.Context, org, env string, c Customer, names []string, from, to time.Time) (any, error) {
	ms, err := m.visible(ctx, org, env, names)
	if err != nil {
		return nil, err
	}
	out := MetersJSON{Customer: c, Subject: c.ID, From: from.UTC(), To: to.UTC(), Meters: []MeterValue{}}
	for i := range ms {
		x := &ms[i]
		res, err := meter.Query(ctx, m.Usage.DB(), m.Dialect, x, meter.Params{From: out.From, To: out.To, TimeZone: time.UTC, Subjects: []string{c.ID}})
		if err != nil {
			return nil, err
		}
		v := MeterValue{Slug: x.Slug, Name: x.Name, Description: x.Description, EventType: x.EventType, Aggregation: x.Aggregation}
		for _, r := range res.Data {
			// One row, for the one subject asked; the check keeps a
			// query's mistake from showing another customer's value.
			if r.Subject != nil && *r.Subject == c.ID {
				v.Value = r.Value
			}
		}
		out.Meters = append(out.Meters, v)
	}
	return out, nil
}

// CustomerStatements answers c's signed statement of each visible meter
// for period: a calendar month (UTC) named YYYY-MM, current (the
// default) or previous, as billing's periods are.
func (m *Metering) CustomerStatements(ctx context.Context, org, env string, c Customer, names []string, period string) (any, error) {
	if m.Biller == nil {
		return nil, notEnabled()
	}
	per, err := m.billingPeriod(period)
	if err != nil {
		return nil, err
	}
	key, err := m.Biller.PublicKey(org)
	if errors.Is(err, billing.ErrNoSecret) {
		return nil, notEnabled()
	} else if err != nil {
		return nil, err
	}
	ms, err := m.visible(ctx, org, env, names)
	if err != nil {
		return nil, err
	}
	out := StatementsJSON{Customer: c, Subject: c.ID, Period: per.Name, PublicKey: key, Statements: []billing.CustomerExport{}}
	for i := range ms {
		ce, err := m.Biller.Statement(ctx, org, env, ms[i].Slug, c.ID, per)
		var fe *meter.FieldError
		if errors.As(err, &fe) {
			return nil, &server.APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: "period", Message: "meter " + ms[i].Slug + ": " + fe.Message}
		} else if err != nil {
			return nil, err
		}
		out.Statements = append(out.Statements, ce)
	}
	return out, nil
}

func notEnabled() error {
	return apiErr(http.StatusNotFound, "not_enabled", "this server does not sign statements (the statements page is off)")
}

func (m *Metering) billingPeriod(s string) (billing.Period, error) {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	t := now().UTC()
	switch s {
	case "", "current":
		s = t.Format("2006-01")
	case "previous":
		s = time.Date(t.Year(), t.Month()-1, 1, 0, 0, 0, 0, time.UTC).Format("2006-01")
	}
	per, err := billing.ParsePeriod(s)
	if err != nil {
		return per, &server.APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: "period", Message: err.Error() + ", current or previous"}
	}
	return per, nil
}
