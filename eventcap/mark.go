package eventcap

import (
	"bytes"
	"encoding/json"
)

// MarkKey is the metadata key under which apimeter says of a stored call
// what the call's own metadata cannot: how it ended, when not with its
// whole answer sent, and what its event lost to the caps. Every entry
// point writes the one shape, Mark: the capture middleware and the
// gateway (which cut before sending, and know how a call ended), and the
// entry points that cut before storing (Kafka / Event Hubs, OTLP,
// CloudEvents, the gateway's in-process ingest). For example:
//
//	"metadata": {"apimeter": {"outcome": "aborted", "bytes_sent": 2097152,
//	  "cut": {"headers": 1, "header_values": 2, "uri_bytes": 17408}}}
const MarkKey = "apimeter"

// Outcomes of a call that did not end with its whole answer sent.
const (
	// OutcomeAborted: the client went away before the answer was sent.
	OutcomeAborted = "aborted"
	// OutcomeReset: the handler (for the gateway: the upstream) broke off
	// the answer, panicking with http.ErrAbortHandler.
	OutcomeReset = "reset"
	// OutcomePanic: the handler panicked with anything else.
	OutcomePanic = "panic"
)

// Mark is the value under MarkKey.
type Mark struct {
	// Outcome is how the call ended when not normally (Outcome*).
	Outcome string `json:"outcome,omitempty"`
	// BytesSent is the response body bytes written before the call
	// ended, with Outcome.
	BytesSent *int64 `json:"bytes_sent,omitempty"`
	// Cut says what the caps took, when they took anything.
	Cut *Cuts `json:"cut,omitempty"`
}

// Cuts are what the caps took from one event.
type Cuts struct {
	// Headers counts the headers left out (request and response).
	Headers int `json:"headers,omitempty"`
	// HeaderValues counts the header values cut to the cap.
	HeaderValues int `json:"header_values,omitempty"`
	// URIBytes is the length of the URI before it was cut.
	URIBytes int `json:"uri_bytes,omitempty"`
	// MetadataBytes is the length of the metadata that was left out.
	MetadataBytes int `json:"metadata_bytes,omitempty"`
}

// Any reports whether anything was cut.
func (k Cuts) Any() bool { return k != Cuts{} }

// add sums o into k.
func (k *Cuts) add(o Cuts) {
	k.Headers += o.Headers
	k.HeaderValues += o.HeaderValues
	k.URIBytes = max(k.URIBytes, o.URIBytes)
	k.MetadataBytes += o.MetadataBytes
}

// empty reports whether m says nothing.
func (m Mark) empty() bool {
	return m.Outcome == "" && m.BytesSent == nil && (m.Cut == nil || !m.Cut.Any())
}

// Apply returns metadata md (JSON, or empty) with m under MarkKey, merged
// with a mark md already holds (an event cut by the capture side and
// again by a stricter collector says both). When the result is longer
// than maxBytes, md's own keys are left out (counted in the mark's
// MetadataBytes) and the mark stays alone. Metadata that is not a JSON
// object is replaced by the mark. md is returned unchanged when m says
// nothing and md is within maxBytes.
func (m Mark) Apply(md []byte, maxBytes int) []byte {
	if m.empty() && (maxBytes <= 0 || len(md) <= maxBytes) {
		return md
	}
	obj := map[string]json.RawMessage{}
	if t := bytes.TrimSpace(md); len(t) > 1 && t[0] == '{' {
		if json.Unmarshal(t, &obj) != nil {
			obj = map[string]json.RawMessage{}
		}
	}
	if prev, ok := obj[MarkKey]; ok {
		var old Mark
		if json.Unmarshal(prev, &old) == nil {
			m = old.merge(m)
		}
		delete(obj, MarkKey)
	}
	b := m.into(obj)
	if maxBytes > 0 && len(b) > maxBytes && len(obj) > 1 {
		delete(obj, MarkKey)
		own, _ := json.Marshal(obj)
		k := Cuts{MetadataBytes: len(own)}
		if m.Cut != nil {
			k.add(*m.Cut)
		}
		m.Cut = &k
		b = m.into(map[string]json.RawMessage{})
	}
	return b
}

// merge returns old with m's findings added.
func (old Mark) merge(m Mark) Mark {
	if m.Outcome != "" {
		old.Outcome, old.BytesSent = m.Outcome, m.BytesSent
	}
	if m.Cut != nil {
		k := *m.Cut
		if old.Cut != nil {
			k.add(*old.Cut)
		}
		old.Cut = &k
	}
	return old
}

func (m Mark) into(obj map[string]json.RawMessage) []byte {
	mb, _ := json.Marshal(m)
	obj[MarkKey] = mb
	b, _ := json.Marshal(obj)
	return b
}

// Read returns the mark of metadata md and whether it has one.
func Read(md []byte) (Mark, bool) {
	var obj struct {
		Mark *Mark `json:"apimeter"`
	}
	if json.Unmarshal(md, &obj) != nil || obj.Mark == nil {
		return Mark{}, false
	}
	return *obj.Mark, true
}
