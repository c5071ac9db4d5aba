// Package loadrun drives a real `apimeter serve` process from outside, as
// senders and attackers would: sustained load with retries while the server
// is killed and restarted, Redis stopped, a poison sender and a slow-client
// flood; and a memory run that reads the server's resident set after a
// given number of events. It backs `apimeter bench faults` and
// `apimeter bench memory`; everything listens on loopback and is bounded
// in time.
package loadrun
