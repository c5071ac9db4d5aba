package clickhouse

import (
	"context"
	"fmt"
	"time"
)

// Setting returns the value of name that every process on this database
// agrees on: the first one written. When there is none yet it writes
// value first, so the first process to start decides. Two processes that
// both start first, within the same second, may each see their own value
// until one reads again; the earliest write wins from then on.
func (s *Store) Setting(ctx context.Context, name, value string) (string, error) {
	got, ok, err := s.setting(ctx, name)
	if err != nil || ok {
		return got, err
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO settings (name, value, written)")
	if err != nil {
		return "", fmt.Errorf("setting %s: %w", name, err)
	}
	defer b.Abort()
	if err := b.Append(name, value, time.Now().UTC()); err != nil {
		return "", fmt.Errorf("setting %s: %w", name, err)
	}
	if err := b.Send(); err != nil {
		return "", fmt.Errorf("setting %s: %w", name, err)
	}
	got, _, err = s.setting(ctx, name)
	return got, err
}

// setting reads the first value written of name.
func (s *Store) setting(ctx context.Context, name string) (string, bool, error) {
	rows, err := s.conn.Query(ctx, "SELECT value FROM settings WHERE name = ? ORDER BY written, value LIMIT 1", name)
	if err != nil {
		return "", false, fmt.Errorf("setting %s: %w", name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return "", false, rows.Err()
	}
	var v string
	if err := rows.Scan(&v); err != nil {
		return "", false, fmt.Errorf("setting %s: %w", name, err)
	}
	return v, true, nil
}
