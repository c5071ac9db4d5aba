package duckdb

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// ExportFormats are the file formats Export writes.
var ExportFormats = []string{"parquet", "csv"}

// Export writes the events of org and env with a request time in [from,
// to), oldest first, in format (parquet or csv, with a header line) to w:
// every column of the events table as stored, so scrubbed as stored (the
// detail column is the JSON of headers, bodies and metadata). DuckDB's COPY
// writes the file, into a temporary file that is then copied to w and
// removed: Parquet's footer is written last, so the file cannot be
// streamed as it is made.
func (s *Store) Export(ctx context.Context, org, env string, from, to time.Time, format string, w io.Writer) error {
	opts := map[string]string{"parquet": "FORMAT parquet, COMPRESSION zstd", "csv": "FORMAT csv, HEADER true"}[format]
	if opts == "" {
		return fmt.Errorf("export: format %q: want parquet or csv", format)
	}
	f, err := os.CreateTemp("", "apimeter-export-*."+format)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	// COPY takes no parameters: the values are quoted here, the only
	// strings in the statement besides the path.
	q := fmt.Sprintf(`COPY (SELECT * FROM events WHERE org = %s AND env = %s AND ts >= %s AND ts < %s ORDER BY ts, id) TO %s (%s)`,
		quote(org), quote(env), quote(from.UTC().Format("2006-01-02 15:04:05.999999")), quote(to.UTC().Format("2006-01-02 15:04:05.999999")), quote(path), opts)
	if _, err := s.db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	f, err = os.Open(path)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("export: send: %w", err)
	}
	return nil
}

// quote makes s an SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
