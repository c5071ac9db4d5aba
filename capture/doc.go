// Package capture is apimeter's net/http middleware: it records each API
// call (request, response, who made it, which route) out of band and hands
// it, with secrets scrubbed, to a Sink such as the apimeter collector. The
// wrapped handler never waits on analytics: events go through a bounded,
// non-blocking queue and are dropped (and counted) when it is full.
package capture
