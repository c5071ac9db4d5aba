package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/apps"
)

// CreateApp adds a new application id for (org, env) to the apps table,
// which every collector on this database reads (apps.OpenLoader).
func (s *Store) CreateApp(ctx context.Context, org, env string) (apps.App, error) {
	if err := apps.CheckNames(org, env); err != nil {
		return apps.App{}, err
	}
	a := apps.App{ID: apps.NewID(org, env), Org: org, Env: env, Created: time.Now().UTC().Truncate(time.Second)}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO apps (id, org, env, created)")
	if err != nil {
		return apps.App{}, fmt.Errorf("create app: %w", err)
	}
	defer b.Abort()
	if err := b.Append(a.ID, a.Org, a.Env, a.Created); err != nil {
		return apps.App{}, err
	}
	if err := b.Send(); err != nil {
		return apps.App{}, fmt.Errorf("create app: %w", err)
	}
	return a, nil
}

// Apps lists the application ids of the apps table.
func (s *Store) Apps(ctx context.Context) ([]apps.App, error) {
	rows, err := s.conn.Query(ctx, "SELECT id, org, env, created FROM apps FINAL")
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	defer rows.Close()
	var out []apps.App
	for rows.Next() {
		var a apps.App
		if err := rows.Scan(&a.ID, &a.Org, &a.Env, &a.Created); err != nil {
			return nil, err
		}
		a.Created = a.Created.UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}
