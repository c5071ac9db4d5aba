package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Engines of NewSQLStore.
const (
	DuckDB     = "duckdb"
	ClickHouse = "clickhouse"
)

// SQLStore is the Store in the event store's own database: tables
// alert_rules, alert_transitions and alert_deliveries beside the events,
// created if missing. Times are microseconds since the Unix epoch, so
// that both engines store and compare them alike. On ClickHouse every
// table is append-only (rules are versioned rows of a
// ReplacingMergeTree), and the reads take the newest row per key, so
// several processes may write at once.
type SQLStore struct {
	db     *sql.DB
	engine string
}

// NewSQLStore opens the alert tables in db, whose engine is DuckDB or
// ClickHouse, creating them when missing.
func NewSQLStore(ctx context.Context, db *sql.DB, engine string) (*SQLStore, error) {
	var ddl []string
	switch engine {
	case DuckDB:
		ddl = []string{
			`CREATE TABLE IF NOT EXISTS alert_rules (org VARCHAR NOT NULL, env VARCHAR NOT NULL, id VARCHAR NOT NULL, body VARCHAR NOT NULL, updated_us BIGINT NOT NULL, deleted BOOLEAN NOT NULL, PRIMARY KEY (org, env, id))`,
			`CREATE TABLE IF NOT EXISTS alert_transitions (id VARCHAR NOT NULL, org VARCHAR NOT NULL, env VARCHAR NOT NULL, rule_id VARCHAR NOT NULL, customer VARCHAR NOT NULL, state VARCHAR NOT NULL, at_us BIGINT NOT NULL, since_us BIGINT NOT NULL, value DOUBLE, volume DOUBLE NOT NULL, threshold DOUBLE NOT NULL, event VARCHAR NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS alert_deliveries (id VARCHAR NOT NULL, notification VARCHAR NOT NULL, org VARCHAR NOT NULL, env VARCHAR NOT NULL, rule_id VARCHAR NOT NULL, customer VARCHAR NOT NULL, event VARCHAR NOT NULL, channel VARCHAR NOT NULL, channel_type VARCHAR NOT NULL, attempt INTEGER NOT NULL, at_us BIGINT NOT NULL, status INTEGER NOT NULL, error VARCHAR NOT NULL, outcome VARCHAR NOT NULL)`,
		}
	case ClickHouse:
		ddl = []string{
			`CREATE TABLE IF NOT EXISTS alert_rules (org String, env String, id String, body String, updated_us Int64, deleted UInt8) ENGINE = ReplacingMergeTree(updated_us) ORDER BY (org, env, id)`,
			`CREATE TABLE IF NOT EXISTS alert_transitions (id String, org String, env String, rule_id String, customer String, state String, at_us Int64, since_us Int64, value Nullable(Float64), volume Float64, threshold Float64, event String) ENGINE = MergeTree ORDER BY (org, env, rule_id, customer, at_us)`,
			`CREATE TABLE IF NOT EXISTS alert_deliveries (id String, notification String, org String, env String, rule_id String, customer String, event String, channel String, channel_type String, attempt Int32, at_us Int64, status Int32, error String, outcome String) ENGINE = MergeTree ORDER BY (org, env, at_us, id)`,
		}
	default:
		return nil, fmt.Errorf("alerts store: unknown engine %q", engine)
	}
	for _, q := range ddl {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("alerts store: create tables: %w", err)
		}
	}
	return &SQLStore{db: db, engine: engine}, nil
}

// insert writes rows into table's cols in one statement (DuckDB) or one
// block (ClickHouse, whose driver sends a prepared INSERT's rows on
// commit).
func (s *SQLStore) insert(ctx context.Context, table, cols string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	n := strings.Count(cols, ",") + 1
	q := "INSERT INTO " + table + " (" + cols + ")"
	if s.engine == DuckDB {
		q += " VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
	}
	st, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, r...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func us(t time.Time) int64 { return t.UnixMicro() }

func fromUS(v int64) time.Time { return time.UnixMicro(v).UTC() }

// Rules implements Store.
func (s *SQLStore) Rules(ctx context.Context) ([]Rule, error) {
	q := `SELECT body, updated_us FROM alert_rules WHERE NOT deleted ORDER BY org, env, id`
	if s.engine == ClickHouse {
		q = `SELECT body, updated_us FROM alert_rules FINAL WHERE deleted = 0 ORDER BY org, env, id`
	}
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("alerts store: rules: %w", err)
	}
	defer rows.Close()
	var out []Rule
	for rows.Next() {
		var body string
		var upd int64
		if err := rows.Scan(&body, &upd); err != nil {
			return nil, fmt.Errorf("alerts store: rules: %w", err)
		}
		var r Rule
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return nil, fmt.Errorf("alerts store: rule body: %w", err)
		}
		r.Source, r.Updated = "api", fromUS(upd)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *SQLStore) putRule(ctx context.Context, org, env, id, body string, upd time.Time, deleted bool) error {
	if s.engine == DuckDB {
		_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO alert_rules (org, env, id, body, updated_us, deleted) VALUES (?, ?, ?, ?, ?, ?)`, org, env, id, body, us(upd), deleted)
		return err
	}
	var d uint8
	if deleted {
		d = 1
	}
	return s.insert(ctx, "alert_rules", "org, env, id, body, updated_us, deleted", [][]any{{org, env, id, body, us(upd), d}})
}

// PutRule implements Store.
func (s *SQLStore) PutRule(ctx context.Context, r Rule) error {
	r.Source = ""
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.putRule(ctx, r.Org, r.Env, r.ID, string(body), r.Updated, false); err != nil {
		return fmt.Errorf("alerts store: put rule %s: %w", r.ID, err)
	}
	return nil
}

// DeleteRule implements Store.
func (s *SQLStore) DeleteRule(ctx context.Context, org, env, id string) error {
	if err := s.putRule(ctx, org, env, id, "{}", time.Now(), true); err != nil {
		return fmt.Errorf("alerts store: delete rule %s: %w", id, err)
	}
	return nil
}

const transitionCols = "id, org, env, rule_id, customer, state, at_us, since_us, value, volume, threshold, event"

// AddTransitions implements Store.
func (s *SQLStore) AddTransitions(ctx context.Context, ts []Transition) error {
	rows := make([][]any, len(ts))
	for i, t := range ts {
		rows[i] = []any{t.ID, t.Org, t.Env, t.RuleID, t.Customer, string(t.State), us(t.At), us(t.Since), t.Value, t.Volume, t.Threshold, t.Event}
	}
	if err := s.insert(ctx, "alert_transitions", transitionCols, rows); err != nil {
		return fmt.Errorf("alerts store: add transitions: %w", err)
	}
	return nil
}

func (s *SQLStore) transitions(ctx context.Context, q string, args ...any) ([]Transition, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("alerts store: transitions: %w", err)
	}
	defer rows.Close()
	var out []Transition
	for rows.Next() {
		var t Transition
		var state string
		var at, since int64
		var v sql.NullFloat64
		if err := rows.Scan(&t.ID, &t.Org, &t.Env, &t.RuleID, &t.Customer, &state, &at, &since, &v, &t.Volume, &t.Threshold, &t.Event); err != nil {
			return nil, fmt.Errorf("alerts store: transitions: %w", err)
		}
		t.State, t.At, t.Since = State(state), fromUS(at), fromUS(since)
		if v.Valid {
			f := v.Float64
			t.Value = &f
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Latest implements Store. The newest transition of an instance is the
// one with the largest time (an instance changes at most once a tick).
func (s *SQLStore) Latest(ctx context.Context, org, env, ruleID string) ([]Transition, error) {
	return s.transitions(ctx, `SELECT `+transitionCols+` FROM alert_transitions
WHERE org = ? AND env = ? AND rule_id = ? AND state <> 'ok' AND (customer, at_us) IN
  (SELECT customer, max(at_us) FROM alert_transitions WHERE org = ? AND env = ? AND rule_id = ? GROUP BY customer)
ORDER BY customer`, org, env, ruleID, org, env, ruleID)
}

// Current implements Store.
func (s *SQLStore) Current(ctx context.Context, org, env string) ([]Transition, error) {
	return s.transitions(ctx, `SELECT `+transitionCols+` FROM alert_transitions
WHERE org = ? AND env = ? AND state <> 'ok' AND (rule_id, customer, at_us) IN
  (SELECT rule_id, customer, max(at_us) FROM alert_transitions WHERE org = ? AND env = ? GROUP BY rule_id, customer)
ORDER BY rule_id, customer`, org, env, org, env)
}

// RecentTransitions implements Store.
func (s *SQLStore) RecentTransitions(ctx context.Context, org, env string, limit int) ([]Transition, error) {
	return s.transitions(ctx, `SELECT `+transitionCols+` FROM alert_transitions WHERE org = ? AND env = ? ORDER BY at_us DESC, id DESC LIMIT ?`, org, env, limit)
}

// Unsent implements Store.
func (s *SQLStore) Unsent(ctx context.Context, org, env, ruleID string, since time.Time) ([]Transition, map[string]map[string]bool, error) {
	ts, err := s.transitions(ctx, `SELECT `+transitionCols+` FROM alert_transitions WHERE org = ? AND env = ? AND rule_id = ? AND event <> '' AND at_us >= ? ORDER BY at_us, id`, org, env, ruleID, us(since))
	if err != nil || len(ts) == 0 {
		return nil, nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT notification, channel FROM alert_deliveries WHERE org = ? AND env = ? AND rule_id = ? AND at_us >= ? AND outcome IN ('delivered', 'failed')`, org, env, ruleID, us(since))
	if err != nil {
		return nil, nil, fmt.Errorf("alerts store: deliveries: %w", err)
	}
	defer rows.Close()
	done := map[string]map[string]bool{}
	for rows.Next() {
		var n, ch string
		if err := rows.Scan(&n, &ch); err != nil {
			return nil, nil, fmt.Errorf("alerts store: deliveries: %w", err)
		}
		if done[n] == nil {
			done[n] = map[string]bool{}
		}
		done[n][ch] = true
	}
	return ts, done, rows.Err()
}

const deliveryCols = "id, notification, org, env, rule_id, customer, event, channel, channel_type, attempt, at_us, status, error, outcome"

// AddDelivery implements Store.
func (s *SQLStore) AddDelivery(ctx context.Context, d Delivery) error {
	row := []any{d.ID, d.Notification, d.Org, d.Env, d.RuleID, d.Customer, d.Event, d.Channel, d.ChannelType, int32(d.Attempt), us(d.At), int32(d.Status), d.Error, d.Outcome}
	if err := s.insert(ctx, "alert_deliveries", deliveryCols, [][]any{row}); err != nil {
		return fmt.Errorf("alerts store: log delivery: %w", err)
	}
	return nil
}

// RecentDeliveries implements Store.
func (s *SQLStore) RecentDeliveries(ctx context.Context, org, env string, limit int) ([]Delivery, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+deliveryCols+` FROM alert_deliveries WHERE org = ? AND env = ? ORDER BY at_us DESC, id DESC LIMIT ?`, org, env, limit)
	if err != nil {
		return nil, fmt.Errorf("alerts store: deliveries: %w", err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var attempt, status int32
		var at int64
		if err := rows.Scan(&d.ID, &d.Notification, &d.Org, &d.Env, &d.RuleID, &d.Customer, &d.Event, &d.Channel, &d.ChannelType, &attempt, &at, &status, &d.Error, &d.Outcome); err != nil {
			return nil, fmt.Errorf("alerts store: deliveries: %w", err)
		}
		d.Attempt, d.Status, d.At = int(attempt), int(status), fromUS(at)
		out = append(out, d)
	}
	return out, rows.Err()
}
