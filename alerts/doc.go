// Package alerts watches the Metrics API's figures and tells people when
// they cross a line: rules per org and environment (a metric over a
// trailing window, per customer or overall; no calls at all; a customer's
// usage of its quota), evaluated every few seconds through the stats
// package's query plan with at most one query per rule per tick (rules over
// the same rows share one), and notifications on firing and on resolving,
// each sent once, to signed JSON webhooks and Slack. State and the delivery
// log live in the event store, so a restart neither repeats nor forgets a
// notification; see docs/alerts.md.
package alerts
