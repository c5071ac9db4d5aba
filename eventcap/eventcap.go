// Package eventcap holds the per-event limits every entry point of
// apimeter applies before an event is stored: the collector (which refuses
// an event over a cap with a 400 naming the field), and the entry points
// that cannot refuse one call without losing it (the Kafka / Event Hubs
// consumer, the in-process Ingest of the gateway, demo, OTLP and
// CloudEvents), which cut the event down to the caps and mark it.
//
// One set of limits means an event stored by any entry point is one the
// read path (GET .../events, the stream, the dashboard) can serve.
package eventcap

import (
	"fmt"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/jsontext"
	"github.com/apimeter/apimeter/moesif"
)

// Defaults of Limits: the collector's defaults (the serve command's
// --max-header-value-bytes, --max-uri-bytes and --max-metadata-bytes).
const (
	DefaultMaxHeaders          = jsontext.MaxHeaders
	DefaultMaxHeaderValueBytes = 16 << 10
	DefaultMaxURIBytes         = 16 << 10
	DefaultMaxMetadataBytes    = 64 << 10
)

// Limits are the caps on one event. A zero field means its Default.
type Limits struct {
	// MaxHeaders is the most headers of a request or of a response.
	MaxHeaders int
	// MaxHeaderValueBytes caps each header value.
	MaxHeaderValueBytes int
	// MaxURIBytes caps the request URI (and path).
	MaxURIBytes int
	// MaxMetadataBytes caps the JSON text of the metadata.
	MaxMetadataBytes int
}

// Default returns the collector's default limits.
func Default() Limits { return Limits{}.OrDefaults() }

// OrDefaults returns l with every zero field set to its Default (and
// MaxHeaders no higher than the collector can decode).
func (l Limits) OrDefaults() Limits {
	if l.MaxHeaders <= 0 || l.MaxHeaders > jsontext.MaxHeaders {
		// The decoders refuse more than jsontext.MaxHeaders: a stored
		// event must stay readable by them.
		l.MaxHeaders = jsontext.MaxHeaders
	}
	if l.MaxHeaderValueBytes <= 0 {
		l.MaxHeaderValueBytes = DefaultMaxHeaderValueBytes
	}
	if l.MaxURIBytes <= 0 {
		l.MaxURIBytes = DefaultMaxURIBytes
	}
	if l.MaxMetadataBytes <= 0 {
		l.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	return l
}

// Check returns a *moesif.FieldError naming the first field of e over a
// cap, or nil. index is the event's place in its batch (-1 for none). The
// collector refuses such an event: its sender is told and may fix it.
func (l Limits) Check(e *apimeter.Event, index int) error {
	l = l.OrDefaults()
	over := func(field, msg string) error {
		return &moesif.FieldError{Index: index, Field: field, Msg: msg}
	}
	if len(e.URI) > l.MaxURIBytes {
		return over("request.uri", fmt.Sprintf("is longer than %d bytes", l.MaxURIBytes))
	}
	for _, m := range []struct {
		side string
		h    apimeter.Headers
	}{{"request", e.RequestHeaders}, {"response", e.ResponseHeaders}} {
		if len(m.h) > l.MaxHeaders {
			return over(m.side+".headers", fmt.Sprintf("more than %d headers", l.MaxHeaders))
		}
		for _, kv := range m.h {
			if len(kv.Value) > l.MaxHeaderValueBytes {
				return over(m.side+".headers."+kv.Name, fmt.Sprintf("is longer than %d bytes", l.MaxHeaderValueBytes))
			}
		}
	}
	if len(e.Metadata) > l.MaxMetadataBytes {
		return over("metadata", fmt.Sprintf("is longer than %d bytes", l.MaxMetadataBytes))
	}
	return nil
}

// Truncate cuts e down to the limits and reports whether it changed
// anything: a URI (and path) over its cap is cut at a character boundary,
// headers past MaxHeaders are dropped and a longer value cut, metadata over
// its cap is replaced. A changed event is marked: its metadata carries a
// Mark under MarkKey whose Cut counts what was taken. Entry points that
// cannot refuse one call without losing it (Kafka, the gateway) call it
// before storing.
func (l Limits) Truncate(e *apimeter.Event) bool {
	l = l.OrDefaults()
	var k Cuts
	if len(e.URI) > l.MaxURIBytes {
		k.URIBytes = len(e.URI)
		e.URI = cutString(e.URI, l.MaxURIBytes)
	}
	if len(e.Path) > l.MaxURIBytes {
		k.URIBytes = max(k.URIBytes, len(e.Path))
		e.Path = cutString(e.Path, l.MaxURIBytes)
	}
	truncHeaders(&e.RequestHeaders, l, &k)
	truncHeaders(&e.ResponseHeaders, l, &k)
	md := []byte(e.Metadata)
	if len(md) > l.MaxMetadataBytes {
		k.MetadataBytes = len(md)
		md = nil
	}
	if !k.Any() {
		return false
	}
	kk := k // a copy for the mark: taking k's address would move it to the heap on every call
	e.Metadata = Mark{Cut: &kk}.Apply(md, l.MaxMetadataBytes)
	return true
}

// truncHeaders cuts *h down to l, counting what it took in k. The
// slice is copied before a change: it may be shared with the sender's
// buffers.
func truncHeaders(h *apimeter.Headers, l Limits, k *Cuts) {
	over := len(*h) > l.MaxHeaders
	if !over {
		for _, kv := range *h {
			if len(kv.Value) > l.MaxHeaderValueBytes {
				over = true
				break
			}
		}
	}
	if !over {
		return
	}
	n := min(len(*h), l.MaxHeaders)
	k.Headers += len(*h) - n
	out := make(apimeter.Headers, n)
	copy(out, (*h)[:n])
	for i := range out {
		if len(out[i].Value) > l.MaxHeaderValueBytes {
			out[i].Value = cutString(out[i].Value, l.MaxHeaderValueBytes)
			k.HeaderValues++
		}
	}
	*h = out
}

// cutString returns the longest prefix of s of at most n bytes that does
// not split a UTF-8 character.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
