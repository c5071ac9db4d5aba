package detail

// IsErrorSQL is apimeter.Event.IsError as a SQL condition on the events
// table's status column, the same text in DuckDB's and ClickHouse's SQL:
// every query that counts errors (the stores' event filters, the usage
// counters, the Metrics API) uses it, so that they all count the same
// calls as errors.
const IsErrorSQL = "(status >= 400 OR status = 0)"
