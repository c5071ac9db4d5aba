package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/portal/token"
)

// The customer portal's tokens (token.Token, hashes only) of every
// collector on this database, in the portal_tokens table, kept as the
// auth_keys table keeps keys: a ReplacingMergeTree whose version is the
// state (0 active, 1 revoked), so that a revocation wins over the row it
// replaces whatever the clocks of the machines that wrote them.

// LoadTokens implements token.Source: the tokens not expired for more
// than a week, so that memory holds the live tokens, not every one ever
// minted (the table is partitioned by month of expiry: docs/portal.md
// says how to drop old months).
func (s *Store) LoadTokens(ctx context.Context) ([]token.Token, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, org, env, customer_kind, customer_id, name, pages, meters, sha256, created, expires, revoked
FROM portal_tokens FINAL WHERE expires > now() - INTERVAL 7 DAY`)
	if err != nil {
		return nil, fmt.Errorf("list portal tokens: %w", err)
	}
	defer rows.Close()
	var out []token.Token
	for rows.Next() {
		var t token.Token
		var revoked *time.Time
		if err := rows.Scan(&t.ID, &t.Org, &t.Env, &t.Customer.Kind, &t.Customer.ID, &t.Name, &t.Pages, &t.Meters, &t.Hash, &t.Created, &t.Expires, &revoked); err != nil {
			return nil, fmt.Errorf("list portal tokens: %w", err)
		}
		if len(t.Pages) == 0 {
			t.Pages = nil
		}
		if len(t.Meters) == 0 {
			t.Meters = nil
		}
		t.Created, t.Expires = t.Created.UTC(), t.Expires.UTC()
		if revoked != nil {
			r := revoked.UTC()
			t.Revoked = &r
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// PutToken implements token.Source.
func (s *Store) PutToken(ctx context.Context, t token.Token) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO portal_tokens (id, org, env, customer_kind, customer_id, name, pages, meters, sha256, created, expires, revoked, state)")
	if err != nil {
		return fmt.Errorf("store portal token %s: %w", t.ID, err)
	}
	defer b.Abort()
	var state uint8
	if t.Revoked != nil {
		state = 1
	}
	pages, meters := t.Pages, t.Meters
	if pages == nil {
		pages = []string{}
	}
	if meters == nil {
		meters = []string{}
	}
	if err := b.Append(t.ID, t.Org, t.Env, t.Customer.Kind, t.Customer.ID, t.Name, pages, meters, t.Hash, t.Created.UTC(), t.Expires.UTC(), t.Revoked, state); err != nil {
		return fmt.Errorf("store portal token %s: %w", t.ID, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store portal token %s: %w", t.ID, err)
	}
	return nil
}
