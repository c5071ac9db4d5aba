// Package otlp receives OpenTelemetry exports over OTLP/HTTP (POST
// /v1/traces and /v1/logs, protobuf or JSON, gzip) and turns every HTTP
// SERVER span, and every log record with HTTP attributes (an access log),
// into an API call. The calls take the collector's own path (identity,
// scrubbing, per-event caps, idempotent store) and are identified by trace
// and span id, so an exporter's retry is counted once. Answers follow the
// OpenTelemetry protocol: partial success for what cannot be used,
// google.rpc.Status bodies and Retry-After for the rest.
package otlp
