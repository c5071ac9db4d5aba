// Package scrub removes secrets from API calls before they are stored or
// sent on. A Scrubber replaces secret header values, secret query
// parameters, URI user info and path parameters, secret fields of JSON
// and form bodies and of metadata, the API key and the session token by
// fingerprints, and caps bodies; a Sender is its front for the one
// goroutine of a sender (the capture middleware, the gateway).
//
// Guarantees: nothing a sender sends reaches storage unscrubbed, and every
// secret becomes the same fingerprint wherever it was seen, so that calls
// can still be counted per API key. A fingerprint is keyed with the
// installation's key (LoadFingerprintKey) in the collector; a sender,
// which does not hold the key, sends the unkeyed form, which the collector
// turns into the same keyed fingerprint. The Scrubber caches header kinds
// and fingerprints, is safe for concurrent use, and is the one
// implementation the collector, the capture middleware and the gateway
// use.
package scrub
