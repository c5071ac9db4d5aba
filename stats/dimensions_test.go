package stats

import (
	"net/http"
	"testing"
)

// TestEveryDimensionAnswers runs each dimension, as a group and in a
// filter, against the real events table, so a dimension mapped to a column
// the store does not have is caught here rather than by a user.
func TestEveryDimensionAnswers(t *testing.T) { forEngines(t, testEveryDimensionAnswers) }

func testEveryDimensionAnswers(t *testing.T, e engine) {
	db := e.open(t, fixtureEvents())
	mux := newMux(t, Config{DB: db, Dialect: e.dialect, QuotaPerMinute: -1})
	for _, d := range dimensionList {
		t.Run(d.name, func(t *testing.T) {
			value := "'x'"
			if d.numeric {
				value = "200"
			}
			for _, u := range []string{
				"/v1/o/myorg/e/test/stats/" + d.name + "?select=sum(message_count)&timeRange=01/01/2018%2000:00~01/01/2027%2000:00",
				"/v1/o/myorg/e/test/stats?select=sum(message_count)&timeRange=01/01/2018%2000:00~01/01/2027%2000:00&filter=(" + d.name + "%20ne%20" + value + ")",
			} {
				if rec := get(mux, u); rec.Code != http.StatusOK {
					t.Errorf("GET %s: %d %s", u, rec.Code, rec.Body.String())
				}
			}
		})
	}
}
