// Package moesif is the Moesif collector schema, both ways: the JSON that
// Moesif's SDKs and the capture middleware send to /v1/events and
// /v1/events/batch (Event, Request, Response, Headers), its decoding into
// apimeter.Event (ToEvent) and back (FromEvent).
//
// DecodeBatch decodes a batch in one pass without reflection and gives what
// encoding/json gives for the same bytes (FuzzDecodeBatch holds it to
// that); it never takes more memory than its Limits allow, whatever the
// batch holds. ToEvent accepts only what it can store: every string valid
// UTF-8, times between 1970 and 2200, and an error naming the field
// (FieldError) for anything else. Events keep an id: the one sent, a
// transaction id header, or a hash of their content, the same from every
// decoder and entry point; NumberRepeats numbers repeats of a content id
// within one batch, so identical calls are counted each.
package moesif
