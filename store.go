package apimeter

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// AppendResult says what an Append did with a batch.
type AppendResult struct {
	// Stored are the events newly written, in batch order.
	Stored []*Event
	// Duplicates counts events skipped because their (org, env, id) was
	// already stored within the dedupe horizon or repeated in the batch.
	Duplicates int
}

// EventFilter selects recent events for the event stream.
type EventFilter struct {
	Org, Env  string
	UserID    string
	CompanyID string
	Status    *int      // exact status (0: no response), nil for any
	Errors    bool      // only calls that count as errors (Event.IsError)
	From, To  time.Time // request time, zero for open
	Limit     int
}

// Profile is a user or company profile sent to /v1/users or /v1/companies.
type Profile struct {
	Org, Env     string
	Kind         string // "user" or "company"
	ID           string
	CompanyID    string // for users: the company they belong to
	ModifiedTime time.Time
	Body         json.RawMessage // the profile as sent, secrets removed
}

// Store keeps events durably and answers reads on them.
type Store interface {
	// Append stores events exactly once per (org, env, id) and returns only
	// after they are durable. It is safe for concurrent use; concurrent
	// calls share commits.
	Append(ctx context.Context, events []Event) (AppendResult, error)
	// Events returns events newest first.
	Events(ctx context.Context, f EventFilter) ([]Event, error)
	// PutProfiles upserts user or company profiles.
	PutProfiles(ctx context.Context, ps []Profile) error
	// Profile returns one profile, or ErrNotFound.
	Profile(ctx context.Context, org, env, kind, id string) (Profile, error)
	Close() error
}

// ErrNotFound is returned when a looked-up thing does not exist.
var ErrNotFound = errors.New("not found")
