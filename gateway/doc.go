// Package gateway is apimeter's reverse proxy: httputil.ReverseProxy with
// the capture middleware around it, so that every API behind it is
// recorded without a change to its backend, and quotas per user, company or
// API key answered with 429 before a call reaches the backend. Its events
// go to a collector over HTTP or, inside `apimeter serve`, straight into
// the server's ingest path. docs/gateway.md is its reference.
package gateway
