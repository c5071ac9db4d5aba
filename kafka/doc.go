// Package kafka carries API calls through Kafka or Azure Event Hubs (its
// Kafka endpoint) with franz-go: a Producer whose Sinks write captured calls
// (the capture middleware's, the gateway's) as Azure API Management's log-to-eventhub messages or as
// collector JSON, and a group Consumer that reads
// them back, pairs each request with its response by message id, and hands
// the calls to the same ingest path as the collector. Offsets are committed
// only once what they cover is stored, and the store's idempotency on the
// event id (the message id) makes redelivery harmless.
package kafka
