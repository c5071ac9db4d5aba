package apimeter

import "context"

// Identifier fills in who made each call (UserID, CompanyID, APIKeyID)
// from what the event carries: explicit ids, API keys, tokens. It runs
// before Scrub, while the raw credentials are still on the event, and must
// leave explicit ids given by the sender alone.
type Identifier interface {
	Identify(ctx context.Context, events []Event) error
}

// Sink receives the events a Store has newly stored (not duplicates), for
// live counters and streams. It must not block for long.
type Sink interface {
	Stored(ctx context.Context, events []*Event) error
}
