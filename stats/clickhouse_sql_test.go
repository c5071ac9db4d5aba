package stats

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// coverBranch is one branch of a ClickHouse cover: the columns it names
// and the table it reads.
var coverBranch = regexp.MustCompile(`SELECT ([^;]+?) FROM (rollup_\w+|events) WHERE`)

// branchColumns are the names of the columns each branch of q's cover
// gives (an alias, or the column itself), one list per branch.
func branchColumns(t *testing.T, q string) [][]string {
	t.Helper()
	var out [][]string
	for _, m := range coverBranch.FindAllStringSubmatch(q, -1) {
		list := m[1]
		if i := strings.LastIndex(list, "SELECT "); i >= 0 {
			list = list[i+len("SELECT "):]
		}
		// The items between commas outside parentheses.
		var names []string
		depth, start := 0, 0
		for i := 0; i <= len(list); i++ {
			if i < len(list) && list[i] == '(' {
				depth++
			} else if i < len(list) && list[i] == ')' {
				depth--
			} else if i == len(list) || (list[i] == ',' && depth == 0) {
				item := strings.TrimSpace(list[start:i])
				if j := strings.LastIndex(item, " AS "); j >= 0 {
					item = item[j+len(" AS "):]
				}
				names = append(names, item)
				start = i + 1
			}
		}
		out = append(out, names)
	}
	if len(out) == 0 {
		t.Fatalf("no cover branch in %s", q)
	}
	return out
}

// TestClickHouseBranchesNameOnlyWhatIsRead checks the generated SQL of
// covered plans on ClickHouse: with whole-second bounds every branch
// applies the filter itself, so it names the filter's columns only when a
// dimension reads them (18.16 reads every column a branch names); with a
// bound inside a second the where clause above the branches reads them
// and they are named. The SQL never says WHERE 1, and the dashboard's
// shapes are one aggregate over the branches, as a hand-written query is.
func TestClickHouseBranchesNameOnlyWhatIsRead(t *testing.T) {
	cases := []struct {
		name, dims string
		params     url.Values
		subSecond  bool
		want       []string // columns every branch names
		notWant    []string // columns no branch names
		wantPrefix string   // the SQL's start
		nested     int      // subqueries, the cover's UNION ALL included; 0: not checked
	}{
		{name: "key usage", params: url.Values{"select": {"sum(message_count),sum(is_error)"}, "filter": {"(api_key eq 'k0')"}},
			notWant: []string{"api_key_id", "user_id", "company_id", "org", "env", "ts"}, wantPrefix: "SELECT if(count() = 0", nested: 1},
		{name: "user daily", params: url.Values{"select": {"sum(message_count)"}, "filter": {"(user_id eq 'u0')"}, "timeUnit": {"day"}},
			want: []string{"ts"}, notWant: []string{"user_id", "company_id"}, nested: 1},
		{name: "calls per API per day", dims: "apiproxy", params: url.Values{"select": {"sum(message_count)"}, "timeUnit": {"day"}},
			want: []string{"ts", "api_name", "weight", "heavy"}, wantPrefix: "SELECT api_name AS d0, toString(tupleElement(sumMap(", nested: 1},
		{name: "companies of some users", dims: "company_id", params: url.Values{"select": {"sum(is_error)"}, "filter": {"(user_id in 'u1','u2')"}},
			want: []string{"company_id", "err_weight"}, notWant: []string{"user_id", "weight"}, nested: 1},
		{name: "filtered dimension", dims: "company_id", params: url.Values{"select": {"sum(message_count)"}, "filter": {"(company_id ne 'c1')"}},
			want: []string{"company_id"}},
		{name: "bound inside a second", subSecond: true, params: url.Values{"select": {"sum(message_count)"}, "filter": {"(api_key eq 'k0')"}},
			want: []string{"api_key_id", "ts_us"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.params.Set("timeRange", "01/01/2024 10:30~01/09/2024 15:45")
			p, err := Parse("o", "e", c.dims, c.params)
			if err != nil {
				t.Fatal(err)
			}
			if c.subSecond {
				p.From = p.From.Add(250 * time.Millisecond)
			}
			f, ok := Eligible(p)
			if !ok {
				t.Fatalf("no rollup family answers %v", c.params)
			}
			p.Cover = WholeCover(p, f)
			q := Build(p, ClickHouse{}).SQL
			if strings.Contains(q, "WHERE 1") {
				t.Errorf("SQL has WHERE 1: %s", q)
			}
			if !strings.HasPrefix(q, c.wantPrefix) {
				t.Errorf("SQL does not start with %q: %s", c.wantPrefix, q)
			}
			if n := strings.Count(q, "(SELECT "); c.nested > 0 && n != c.nested {
				t.Errorf("%d subqueries, want %d: %s", n, c.nested, q)
			}
			branches := branchColumns(t, q)
			if len(branches) < 2 {
				t.Fatalf("want rollup and events branches, got %d in %s", len(branches), q)
			}
			for _, names := range branches {
				for _, w := range c.want {
					if !slices.Contains(names, w) {
						t.Errorf("branch names %q, want %s among them\nSQL: %s", names, w, q)
					}
				}
				for _, w := range c.notWant {
					if slices.Contains(names, w) {
						t.Errorf("branch names %q: %s is not read above it\nSQL: %s", names, w, q)
					}
				}
			}
		})
	}
}

// TestIntArray reads ClickHouse's text of an array of integers, as the
// sumMap plan sends its arrays, and the driver's form.
func TestIntArray(t *testing.T) {
	for in, want := range map[string][]int64{"[]": nil, "[7]": {7}, "[1,-2,1796515200000000]": {1, -2, 1796515200000000}} {
		got, err := intArray(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("intArray(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []any{"1,2", "1,2]", "[1,2", "[1,x]", "[1.5]", []float64{1}} {
		if got, err := intArray(in); err == nil {
			t.Errorf("intArray(%v) = %v, want an error", in, got)
		}
	}
	if got, err := intArray([]int64{3}); err != nil || !slices.Equal(got, []int64{3}) {
		t.Errorf("intArray([]int64{3}) = %v, %v", got, err)
	}
}
