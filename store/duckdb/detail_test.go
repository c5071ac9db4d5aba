package duckdb

import (
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

func TestRowMatchesColumns(t *testing.T) {
	n := len(strings.Split(eventColumns, ","))
	row, _ := RowValues(nil, nil, &apimeter.Event{}, time.Now())
	if n != columnCount || len(row) != columnCount {
		t.Fatalf("eventColumns has %d columns, RowValues gives %d values, columnCount says %d", n, len(row), columnCount)
	}
}
