// Package e2e_test runs package otlp against real parts: OpenTelemetry's Go
// SDK and exporters, the collector's server, DuckDB and ClickHouse stores,
// the Metrics API. It lives apart from otlp so that otlp's fuzz targets are
// built without the stores and the SDK, and run many times faster.
package e2e_test
