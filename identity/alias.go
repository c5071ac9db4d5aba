package identity

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/scrub"
)

// Alias maps one API key, token or client id, held only as its SHA-256
// (scrub.KeyHash), to the user (and company) it belongs to, within an
// org and environment. A user may hold many aliases.
type Alias struct {
	Org, Env  string
	KeyHash   string // hex SHA-256 of the key
	UserID    string
	CompanyID string
	// ExpiresAt is when the key stops identifying its user: calls made at or
	// after it are not attributed through this alias. Zero means never.
	ExpiresAt time.Time
	CreatedAt time.Time
}

// KeyID is the unkeyed fingerprint of the key (scrub.Fingerprint of the
// raw key), computed from its hash. The collector's keyed Scrubber turns it
// into the fingerprint events store (Scrubber.FingerprintOfHash), the same
// as that of the raw key: aliases match by KeyHash, which the fingerprint
// key does not change, so aliases made before and after it match alike.
func (a Alias) KeyID() string { return scrub.FingerprintOfHash(a.KeyHash) }

// ValidAt reports whether the alias identifies a call made at t.
func (a Alias) ValidAt(t time.Time) bool { return a.ExpiresAt.IsZero() || t.Before(a.ExpiresAt) }

// Validate checks that the alias can be stored.
func (a Alias) Validate() error {
	switch {
	case a.Org == "":
		return fieldErr("org", "is required")
	case a.Env == "":
		return fieldErr("env", "is required")
	case !ValidKeyHash(a.KeyHash):
		return fieldErr("key_hash", "must be the 64 lower-case hex digits of the key's SHA-256")
	case a.UserID == "":
		return fieldErr("user_id", "is required")
	}
	return nil
}

// ValidKeyHash reports whether s looks like a hex SHA-256.
func ValidKeyHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// AliasRef names one alias-table entry to look up.
type AliasRef struct {
	Org, Env, KeyHash string
}

// Aliases is the alias table. Implementations must be safe for concurrent
// use and share one answer between all collectors that use them.
type Aliases interface {
	// PutAlias inserts or replaces the alias for a.KeyHash.
	PutAlias(ctx context.Context, a Alias) error
	// GetAlias returns one alias or apimeter.ErrNotFound.
	GetAlias(ctx context.Context, org, env, keyHash string) (Alias, error)
	// DeleteAlias removes one alias; it returns apimeter.ErrNotFound when
	// there was none.
	DeleteAlias(ctx context.Context, org, env, keyHash string) error
	// UserAliases lists a user's aliases, oldest first.
	UserAliases(ctx context.Context, org, env, userID string) ([]Alias, error)
	// LookupAliases resolves many keys at once (one round trip where the
	// backend is remote): out[i] is the alias of refs[i], or the zero
	// Alias when there is none. len(out) must equal len(refs).
	LookupAliases(ctx context.Context, refs []AliasRef, out []Alias) error
}

// FieldError is bad input to the admin API or a configuration: which field
// and what is wrong with it.
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

func fieldErr(field, msg string) error { return &FieldError{Field: field, Msg: msg} }
