package stats

import (
	"sort"
	"strings"
)

// Aggregate functions. Sum, Avg, Min and Max are Apigee's; the percentiles
// are apimeter's addition for response times. None marks metrics selected
// without a function (tps, unique_users).
const (
	aggNone = ""
	aggSum  = "sum"
	aggAvg  = "avg"
	aggMin  = "min"
	aggMax  = "max"
	aggP50  = "p50"
	aggP95  = "p95"
	aggP99  = "p99"
)

// metricKind says how a metric's value is formed from a row.
type metricKind int

const (
	kindCount    metricKind = iota // each row counts its weight
	kindError                      // rows with status >= 400 or no response (0) count their weight
	kindValue                      // a numeric column, weighted for sum and avg
	kindTPS                        // weight per second of the interval
	kindDistinct                   // distinct non-empty user ids
)

// metric is one name usable in select=.
type metric struct {
	name string
	kind metricKind
	// column is the value column for kindValue, named by its role in the
	// events table; the dialect never sees user text here.
	column string
	// aggs are the allowed functions; the first is used when the metric is
	// selected bare (message_count means sum(message_count),
	// total_response_time avg(total_response_time)). Metrics without any
	// (tps, unique_users) are only selected bare.
	aggs []string
}

// Value columns. request_processing_latency is the time the gateway spent
// outside the target (total minus target), known only when the target time
// was measured.
const (
	colLatency       = "latency_ms"
	colTargetLatency = "target_latency_ms"
	colProcessing    = "(latency_ms - target_latency_ms)"
	colReqSize       = "req_size"
	colRespSize      = "resp_size"
)

var metricList = []metric{
	{name: "message_count", kind: kindCount, aggs: []string{aggSum}},
	{name: "is_error", kind: kindError, aggs: []string{aggSum}},
	{name: "error_count", kind: kindError, aggs: []string{aggSum}},
	{name: "total_response_time", kind: kindValue, column: colLatency, aggs: []string{aggAvg, aggMin, aggMax, aggSum, aggP50, aggP95, aggP99}},
	{name: "target_response_time", kind: kindValue, column: colTargetLatency, aggs: []string{aggAvg, aggMin, aggMax, aggSum, aggP50, aggP95, aggP99}},
	{name: "request_processing_latency", kind: kindValue, column: colProcessing, aggs: []string{aggAvg, aggMin, aggMax}},
	{name: "response_size", kind: kindValue, column: colRespSize, aggs: []string{aggSum, aggAvg, aggMin, aggMax}},
	{name: "request_size", kind: kindValue, column: colReqSize, aggs: []string{aggSum, aggAvg, aggMin, aggMax}},
	{name: "tps", kind: kindTPS},
	{name: "unique_users", kind: kindDistinct},
}

func lookupMetric(name string) (metric, bool) {
	for _, m := range metricList {
		if m.name == name {
			return m, true
		}
	}
	return metric{}, false
}

func metricNames() string {
	names := make([]string, len(metricList))
	for i, m := range metricList {
		names[i] = m.name
	}
	return strings.Join(names, ", ")
}

func (m metric) allows(agg string) bool {
	if agg == aggNone {
		return true // the first function, or none
	}
	for _, a := range m.aggs {
		if a == agg {
			return true
		}
	}
	return false
}

func isPercentile(agg string) bool { return agg == aggP50 || agg == aggP95 || agg == aggP99 }

func percentilePercent(agg string) int64 {
	switch agg {
	case aggP50:
		return 50
	case aggP95:
		return 95
	default:
		return 99
	}
}

// dimension is one name usable in /stats/{dimensions} and in filter=.
type dimension struct {
	name string
	// column is an events column, or colBasepath for the derived base path.
	column  string
	numeric bool
}

// colBasepath marks the derived proxy_basepath dimension: the first path
// segment, rendered by the dialect.
const colBasepath = "#basepath"

// colAPIVersion marks the apiproxy_revision dimension: the API version the
// sender reported, kept in the detail JSON column.
const colAPIVersion = "#api_version"

// dimensionList maps Apigee's dimension names (where apimeter has the
// meaning) and apimeter's own names to columns. docs/api.md documents it.
var dimensionList = []dimension{
	{name: "apiproxy", column: "api_name"},
	{name: "apis", column: "api_name"},
	{name: "apiproxy_revision", column: colAPIVersion},
	{name: "developer", column: "user_id"},
	{name: "developer_email", column: "user_id"},
	{name: "developer_app", column: "company_id"},
	{name: "apps", column: "company_id"},
	{name: "client_id", column: "api_key_id"},
	{name: "request_verb", column: "method"},
	{name: "request_path", column: "path"},
	{name: "request_uri", column: "uri"},
	{name: "response_status_code", column: "status", numeric: true},
	{name: "target_url", column: "target_url"},
	{name: "client_ip", column: "client_ip"},
	{name: "useragent", column: "user_agent"},
	{name: "proxy_basepath", column: colBasepath},
	{name: "user_id", column: "user_id"},
	{name: "company_id", column: "company_id"},
	{name: "route", column: "route"},
	{name: "api_key", column: "api_key_id"},
	{name: "environment", column: "env"},
}

func lookupDimension(name string) (dimension, bool) {
	for _, d := range dimensionList {
		if d.name == name {
			return d, true
		}
	}
	return dimension{}, false
}

func dimensionNames() string {
	names := make([]string, len(dimensionList))
	for i, d := range dimensionList {
		names[i] = d.name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
