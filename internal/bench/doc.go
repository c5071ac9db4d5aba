// Package bench holds the harnesses behind `apimeter bench`: ingest (batches
// from concurrent clients into a running instance, next to the store's bare
// write), capture and gateway (loopback load runs, bare and instrumented in
// alternating rounds), faults and memory (a serve child process under
// faults and load, through internal/loadrun). Each starts what it measures
// the way apimeter does, through package instance; docs/performance.md
// has its figures with the commands that produce them.
package bench
