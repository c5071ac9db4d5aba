package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// State is an alert instance's state.
type State string

// States. An instance is pending while its condition holds for less than
// the rule's For, firing after that, and OK otherwise.
const (
	OK      State = "ok"
	Pending State = "pending"
	Firing  State = "firing"
)

// Events a notification announces.
const (
	EventFiring   = "firing"
	EventResolved = "resolved"
)

// Sample is one instance's figures at an evaluation.
type Sample struct {
	// Customer is the user, company or API key of a per-customer rule,
	// "" otherwise.
	Customer string
	// Value is the metric (nil: no data, e.g. a percentile of no calls).
	Value *float64
	// Volume is the calls in the window.
	Volume float64
	// Threshold is the value the condition compares with (for quota rules,
	// the percentage of the customer's limit).
	Threshold float64
}

// Transition is a change of an instance's state, as stored. A transition
// to firing, and one from firing to OK, is also a notification, whose id
// is the transition's.
type Transition struct {
	ID       string    `json:"id"`
	Org      string    `json:"org"`
	Env      string    `json:"env"`
	RuleID   string    `json:"rule_id"`
	Customer string    `json:"customer"`
	State    State     `json:"state"`
	At       time.Time `json:"at"`
	// Since is when the condition began to hold (pending and firing), or
	// when it cleared (OK).
	Since     time.Time `json:"since"`
	Value     *float64  `json:"value"`
	Volume    float64   `json:"volume"`
	Threshold float64   `json:"threshold"`
	// Event is firing or resolved when the transition notifies, else "".
	Event string `json:"event,omitempty"`
}

// Delivery is one attempt to send a notification to one channel.
type Delivery struct {
	ID           string    `json:"id"`
	Notification string    `json:"notification"` // the transition's id
	Org          string    `json:"org"`
	Env          string    `json:"env"`
	RuleID       string    `json:"rule_id"`
	Customer     string    `json:"customer"`
	Event        string    `json:"event"`
	Channel      string    `json:"channel"` // Channel.id()
	ChannelType  string    `json:"channel_type"`
	Attempt      int       `json:"attempt"`
	At           time.Time `json:"at"`
	Status       int       `json:"status"` // HTTP status, 0 for none
	Error        string    `json:"error,omitempty"`
	// Outcome is delivered, retry (another attempt follows) or failed
	// (given up).
	Outcome string `json:"outcome"`
}

// Delivery outcomes.
const (
	Delivered = "delivered"
	Retry     = "retry"
	Failed    = "failed"
)

// Store keeps rules made over the API, instance state and the delivery
// log. Implementations: NewSQLStore for DuckDB and ClickHouse.
type Store interface {
	Rules(ctx context.Context) ([]Rule, error)
	PutRule(ctx context.Context, r Rule) error
	DeleteRule(ctx context.Context, org, env, id string) error

	// AddTransitions stores transitions; each is the newest of its
	// instance once stored.
	AddTransitions(ctx context.Context, ts []Transition) error
	// Latest returns the newest transition of every instance of a rule
	// whose state is not OK.
	Latest(ctx context.Context, org, env, ruleID string) ([]Transition, error)
	// Unsent returns the notifying transitions of a rule since since, with
	// the channels each has a final delivery (delivered or failed) for.
	Unsent(ctx context.Context, org, env, ruleID string, since time.Time) ([]Transition, map[string]map[string]bool, error)
	// AddDelivery logs one attempt.
	AddDelivery(ctx context.Context, d Delivery) error
	// Recent returns an org's (env's) latest transitions and deliveries,
	// newest first.
	RecentTransitions(ctx context.Context, org, env string, limit int) ([]Transition, error)
	RecentDeliveries(ctx context.Context, org, env string, limit int) ([]Delivery, error)
	// Current returns the newest transition of every instance of the
	// org's (env's) rules that is not OK.
	Current(ctx context.Context, org, env string) ([]Transition, error)
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}
