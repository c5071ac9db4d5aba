package capture

import (
	"unicode/utf8"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/eventcap"
	"github.com/apimeter/apimeter/internal/jsontext"
)

// An event the collector refuses takes nothing else with it any more (see
// HTTPSink), but it is still lost; so the capture side never makes one. A
// call with 1,001 headers, a 20 KB header or a 17 KB URI is proxied and
// answered like any other, and its event is cut to the collector's caps
// (eventcap.Limits): the headers past the cap are left out, a value or
// the URI is cut at a character boundary, metadata too long is replaced,
// and the event's metadata says what was cut (eventcap.Mark, under
// eventcap.MarkKey).
// Both ways of building an event (appendRecord and fillEvent) cut the same
// things, in the same order.

// Outcomes of a call that did not end with its whole answer sent, as its
// metadata's mark says them (eventcap.Mark).
const (
	// OutcomeAborted: the client went away before the answer was sent.
	OutcomeAborted = eventcap.OutcomeAborted
	// OutcomeReset: the handler (for the gateway: the upstream) broke off
	// the answer, panicking with http.ErrAbortHandler.
	OutcomeReset = eventcap.OutcomeReset
	// OutcomePanic: the handler panicked with anything else.
	OutcomePanic = eventcap.OutcomePanic
)

// cuts are what the caps took from one event.
type cuts = eventcap.Cuts

// capText returns s as the collector would measure it (valid UTF-8), cut
// at a character boundary to at most n bytes, and whether it was cut. A
// text that fits is returned as it is (its encoder makes it valid).
func capText(s string, n int) (string, bool) {
	if len(s) <= n/utf8.UTFMax || len(s) <= n && utf8.ValidString(s) {
		// Even if every byte were invalid, each becomes 3 bytes of U+FFFD.
		return s, false
	}
	v := jsontext.ValidString(s)
	if len(v) <= n {
		return s, false
	}
	i := n
	for i > 0 && !utf8.RuneStart(v[i]) {
		i--
	}
	return v[:i], true
}

// headerBudget is how many of a side's n headers are sent: the caps' most,
// less one for a Content-Length the capture adds.
func (c *Capture) headerBudget(n int, addLen bool) int {
	max := c.caps.MaxHeaders
	if addLen {
		max--
	}
	return min(n, max)
}

// capURI cuts a URI to the cap, counting it in k.
func (c *Capture) capURI(uri string, k *cuts) string {
	v, cut := capText(uri, c.caps.MaxURIBytes)
	if cut {
		k.URIBytes = len(uri)
	}
	return v
}

// capValue cuts a header value to the cap, counting it in k.
func (c *Capture) capValue(v string, k *cuts) string {
	v, cut := capText(v, c.caps.MaxHeaderValueBytes)
	if cut {
		k.HeaderValues++
	}
	return v
}

// metadataJSON is the metadata sent for an event: the handler's (user,
// already JSON, or nil) with the mark of how the call ended and what was
// cut (eventcap.Mark); replaced by the mark alone when it is longer than
// the cap. It returns nil when there is nothing to send.
func (c *Capture) metadataJSON(user []byte, outcome string, sent int64, k *cuts) []byte {
	if outcome == "" && !k.Any() && len(user) <= c.caps.MaxMetadataBytes {
		return user
	}
	m := eventcap.Mark{Outcome: outcome}
	if outcome != "" {
		n := sent // a copy: taking the parameter's address moved it to the heap on every call
		m.BytesSent = &n
	}
	if k.Any() {
		kk := *k
		m.Cut = &kk
	}
	return m.Apply(user, c.caps.MaxMetadataBytes)
}

// capEvent holds an Event to the caps after Mask (which may have grown
// it), for the Event path; fillEvent cut it as appendRecord cuts a record
// before Mask ran, into k.
func (c *Capture) capEvent(e *apimeter.Event, k *cuts) {
	for _, h := range []*apimeter.Headers{&e.RequestHeaders, &e.ResponseHeaders} {
		if n := len(*h); n > c.caps.MaxHeaders {
			k.Headers += n - c.caps.MaxHeaders
			*h = (*h)[:c.caps.MaxHeaders]
		}
		for i := range *h {
			(*h)[i].Value = c.capValue((*h)[i].Value, k)
		}
	}
	e.URI = c.capURI(e.URI, k)
}
