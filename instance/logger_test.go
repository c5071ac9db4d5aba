package instance

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestLogFormatJSONWritesOneObjectALine: --log-format json gives lines a
// log collector parses as JSON; text stays key=value.
func TestLogFormatJSONWritesOneObjectALine(t *testing.T) {
	var out bytes.Buffer
	NewLogger(&out, slog.LevelInfo, "json").Info("batch rejected", "org", "acme")
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line["msg"] != "batch rejected" || line["org"] != "acme" {
		t.Errorf("json log line %q: %v", out.String(), err)
	}
	out.Reset()
	NewLogger(&out, slog.LevelInfo, "text").Info("batch rejected", "org", "acme")
	if !strings.Contains(out.String(), `msg="batch rejected" org=acme`) {
		t.Errorf("text log line %q", out.String())
	}
}
