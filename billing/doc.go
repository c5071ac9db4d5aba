// Package billing turns meters into bills: per customer (a meter's
// subject), meter and calendar month, the value and the number of events
// behind it (Export), that value pushed to Stripe Billing's meter events
// exactly once (Pusher, with a ledger kept in the store), and signed
// statements a customer can recompute from the events they list
// (Statement, Verify).
//
// Every figure comes from the meter package's query (meter.Query,
// meter.CountedEvents), so an export equals the meter query of the same
// period on both stores.
package billing
