// Package authtest checks apimeter's keys against a real outside client:
// Apigee's Node library apigee-edge-js (pinned in node/package-lock.json)
// reads the Metrics API of a running apimeter with a key, as a token and as
// Basic credentials. The test skips when node or node/node_modules is
// absent; `npm ci --prefix authtest/node` installs the latter (.ci/run does).
package authtest
