package detail

import "github.com/apimeter/apimeter"

// IsErrorSQL is apimeter.Event.IsError as a SQL condition on the events
// table's status column, the same text in DuckDB's and ClickHouse's SQL:
// every query that counts errors (the stores' event filters, the usage
// counters, the Metrics API) uses it, so that they all count the same
// calls as errors.
const IsErrorSQL = "(status >= 400 OR status = 0)"

// Filter renders the conditions of f on the events table, with their
// arguments for ? placeholders: every condition but the time range, which
// each store bounds on its own time columns. Both stores take their
// conditions from here, so that an event stream filter selects the same
// events on either.
func Filter(f apimeter.EventFilter) (where []string, args []any) {
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	add("org = ?", f.Org)
	add("env = ?", f.Env)
	if f.UserID != "" {
		add("user_id = ?", f.UserID)
	}
	if f.CompanyID != "" {
		add("company_id = ?", f.CompanyID)
	}
	if f.APIName != "" {
		add("api_name = ?", f.APIName)
	}
	if f.Route != "" {
		add("route = ?", f.Route)
	}
	if f.Status != nil {
		add("status = ?", *f.Status)
	}
	if f.Errors {
		where = append(where, IsErrorSQL)
	}
	return where, args
}
