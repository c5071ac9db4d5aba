package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/auth"
)

// The read and admin keys (auth.Key, hashes only) of every collector on
// this database, in the auth_keys table, so that a key created or revoked
// through any of them holds on all: a key file per collector would have
// to be copied to every machine and kept in step by hand.
//
// The table is a ReplacingMergeTree whose version is the key's state (0
// active, 1 revoked): a revocation is never undone, so it wins over the
// row it replaces whatever the clocks of the machines that wrote them, and
// two revocations of one key are both revoked.

// LoadKeys implements auth.Source.
func (s *Store) LoadKeys(ctx context.Context) ([]auth.Key, error) {
	rows, err := s.conn.Query(ctx, "SELECT id, org, envs, scope, name, sha256, created, revoked FROM auth_keys FINAL")
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var out []auth.Key
	for rows.Next() {
		var k auth.Key
		var revoked *time.Time
		if err := rows.Scan(&k.ID, &k.Org, &k.Envs, &k.Scope, &k.Name, &k.Hash, &k.Created, &revoked); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		if len(k.Envs) == 0 {
			k.Envs = nil
		}
		k.Created = k.Created.UTC()
		if revoked != nil {
			t := revoked.UTC()
			k.Revoked = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// PutKey implements auth.Source.
func (s *Store) PutKey(ctx context.Context, k auth.Key) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO auth_keys (id, org, envs, scope, name, sha256, created, revoked, state)")
	if err != nil {
		return fmt.Errorf("store key %s: %w", k.ID, err)
	}
	defer b.Abort()
	envs := k.Envs
	if envs == nil {
		envs = []string{}
	}
	var state uint8
	if k.Revoked != nil {
		state = 1
	}
	if err := b.Append(k.ID, k.Org, envs, k.Scope, k.Name, k.Hash, k.Created.UTC(), k.Revoked, state); err != nil {
		return fmt.Errorf("store key %s: %w", k.ID, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store key %s: %w", k.ID, err)
	}
	return nil
}
