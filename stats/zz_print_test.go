package stats

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestZZPrint(t *testing.T) {
	for _, bq := range benchQueries {
		v, _ := url.ParseQuery(bq.query)
		v.Set("timeRange", benchRange)
		p, _ := Parse("bench", "prod", bq.dims, v)
		q := Build(p, DuckDB{})
		s := q.SQL
		for i := len(q.Args); i >= 1; i-- {
			a := q.Args[i-1]
			var lit string
			switch a := a.(type) {
			case string:
				lit = "'" + a + "'"
			case time.Time:
				lit = "TIMESTAMP '" + a.Format("2006-01-02 15:04:05") + "'"
			default:
				lit = fmt.Sprint(a)
			}
			s = strings.ReplaceAll(s, fmt.Sprintf("$%d", i), lit)
		}
		fmt.Println(s)
	}
}
