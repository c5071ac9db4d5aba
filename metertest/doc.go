// Package metertest checks apimeter's usage metering against a real
// outside client: OpenMeter's JavaScript SDK (@openmeter/sdk, pinned in
// node/package-lock.json) defines meters, ingests usage events and queries
// them on a running apimeter, on DuckDB and on ClickHouse. The test skips
// when node or node/node_modules is absent; `npm ci --prefix
// metertest/node` installs the latter (.ci/run does).
package metertest
