package moesif

import "github.com/apimeter/apimeter/internal/jsontext"

// Defaults of the per-event caps every entry point holds an event to.
const (
	DefaultMaxHeaderValueBytes = 16 << 10
	DefaultMaxURIBytes         = 16 << 10
	DefaultMaxMetadataBytes    = 64 << 10
)

// EventCaps are the sizes one event may reach: the collector refuses an
// event past any of them (naming the field), and the capture side
// (middleware, gateway) cuts its events to them before they leave, so
// that no call it records is refused. Zero fields mean the defaults.
type EventCaps struct {
	// MaxHeaders is the most headers of a request or of a response.
	MaxHeaders int
	// MaxHeaderValueBytes caps each header value, MaxURIBytes the full
	// request URI, MaxMetadataBytes the JSON text of the metadata; all
	// count the bytes of the text once it is valid UTF-8, as the collector
	// decodes it.
	MaxHeaderValueBytes int
	MaxURIBytes         int
	MaxMetadataBytes    int
}

// OrDefaults returns c with every zero field set to its default.
func (c EventCaps) OrDefaults() EventCaps {
	if c.MaxHeaders <= 0 {
		c.MaxHeaders = jsontext.MaxHeaders
	}
	if c.MaxHeaderValueBytes <= 0 {
		c.MaxHeaderValueBytes = DefaultMaxHeaderValueBytes
	}
	if c.MaxURIBytes <= 0 {
		c.MaxURIBytes = DefaultMaxURIBytes
	}
	if c.MaxMetadataBytes <= 0 {
		c.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	return c
}
