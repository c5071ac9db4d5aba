// Package stats implements Apigee Edge's Metrics API on apimeter's events:
// it parses the query language of /stats and /stats/{dimensions} (select,
// timeRange, timeUnit, filter, sortby, topk, limit, ...) into a Plan, renders
// the Plan as SQL for a store's dialect with every user value bound as a
// parameter, runs it, and answers in Apigee's JSON shape.
package stats
