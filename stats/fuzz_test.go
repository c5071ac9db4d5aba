package stats

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
)

func seedLines(f *testing.F, name string) {
	f.Helper()
	fh, err := os.Open("testdata/" + name)
	if err != nil {
		f.Fatalf("seeds: %v", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f.Add(sc.Text())
	}
}

func countValues(e Expr) int {
	switch e := e.(type) {
	case *Logic:
		return countValues(e.L) + countValues(e.R)
	case *Cond:
		return len(e.Values)
	}
	return 0
}

// FuzzParseFilter: the filter parser never panics, and an accepted filter
// renders to SQL in which every literal is a bound parameter.
func FuzzParseFilter(f *testing.F) {
	seedLines(f, "filters.txt")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseFilter(s)
		if err != nil {
			return
		}
		p := &Plan{Org: "o", Env: "e", From: time.Unix(0, 0), To: time.Unix(60, 0), Filter: e,
			Select: []Selection{{Name: "sum(message_count)", Metric: metricList[0], Agg: aggSum}}, Limit: 1}
		q := Build(p, DuckDB{})
		if want := 4 + countValues(e); len(q.Args) != want {
			t.Fatalf("filter %q: %d bound arguments, want %d (4 + one per value)\n%s", s, len(q.Args), want, q.SQL)
		}
		where := q.SQL[strings.Index(q.SQL, " WHERE "):]
		if strings.ContainsAny(where, "\"") {
			t.Fatalf("filter %q: a double quote reached the SQL: %s", s, q.SQL)
		}
	})
}

// FuzzParseTimeRange: the timeRange parser never panics, and an accepted
// range is ordered, whole minutes, and reads back the same once formatted.
func FuzzParseTimeRange(f *testing.F) {
	seedLines(f, "timeranges.txt")
	f.Fuzz(func(t *testing.T, s string) {
		from, to, err := ParseTimeRange(s)
		if err != nil {
			return
		}
		if !from.Before(to) || from.Second() != 0 || to.Second() != 0 {
			t.Fatalf("%q gave %v~%v", s, from, to)
		}
		back := from.Format("01/02/2006 15:04") + "~" + to.Format("01/02/2006 15:04")
		f2, t2, err := ParseTimeRange(back)
		if err != nil || !f2.Equal(from) || !t2.Equal(to) {
			t.Fatalf("%q gave %v~%v, which formatted as %q reads back as %v~%v, %v", s, from, to, back, f2, t2, err)
		}
	})
}
