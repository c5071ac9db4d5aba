package kafka

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/httpmsg"
)

// Sink writes the batches of one capture (the middleware's, or one gateway
// upstream's) to its Producer's topic. It is a capture.BorrowingSink: Send
// encodes the batch into buffers reused from batch to batch and returns once
// the brokers have every record (or the delivery timeout has passed), so it
// keeps nothing of the events and the capture lends it events that point
// into its own buffers. The capture's bounded queue stands between the API
// and Send: while Send waits on slow or absent brokers, calls go on and the
// queue fills, then drops and counts.
//
// Send is called from one goroutine at a time, as capture does. Several
// Sinks of one Producer share its connections; closing a Sink does not
// close the Producer.
type Sink struct {
	p    *Producer
	buf  []byte       // the batch's keys and values
	at   []span       // where each record's key and value are in buf
	recs []kgo.Record // reused records; kgo is done with them when Send returns
	wg   sync.WaitGroup
	done func(*kgo.Record, error) // the records' promise, made once

	mu     sync.Mutex // guards what done writes
	err    error      // the batch's first delivery error
	failed int        // records of the batch not delivered
}

// span locates one record in Sink.buf.
type span struct {
	key, keyEnd int // the key is buf[key:keyEnd]
	val, end    int // the value buf[val:end]
	part        int32
	resp        bool // the response half of a call: its timestamp is the response's
	event       int
}

// Sink returns a new Sink writing to p's topic.
func (p *Producer) Sink() *Sink {
	s := &Sink{p: p}
	s.done = func(_ *kgo.Record, err error) {
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.failed++
			s.mu.Unlock()
		}
		s.wg.Done()
	}
	return s
}

// Send writes events and waits until the brokers have them. In FormatAPIM
// each call is two records, the request on RequestPartition and the
// response on ResponsePartition (none when the call had no response), both
// keyed by the message id; the message id is the event's id, so that the
// consumer stores the call under the id its caller saw in
// X-Moesif-Transaction-Id. In FormatJSON each call is one record in the
// collector's schema keyed by the event id. A batch is written whole or
// counted failed whole; a call whose request was written and whose
// response was not is stored by the consumer as a request without
// response.
func (s *Sink) Send(ctx context.Context, events []apimeter.Event) error {
	if len(events) == 0 {
		return nil
	}
	s.encode(events)
	if cap(s.recs) < len(s.at) {
		s.recs = make([]kgo.Record, len(s.at))
	}
	recs := s.recs[:len(s.at)]
	s.err, s.failed = nil, 0
	s.wg.Add(len(recs))
	for i, sp := range s.at {
		e := &events[sp.event]
		recs[i] = kgo.Record{Key: s.buf[sp.key:sp.keyEnd:sp.keyEnd], Value: s.buf[sp.val:sp.end:sp.end], Partition: sp.part, Timestamp: e.RequestTime}
		if sp.resp {
			recs[i].Timestamp = e.ResponseTime
		}
		s.p.cl.Produce(ctx, &recs[i], s.done)
	}
	s.wg.Wait()
	// kgo is done with the records; drop what they point to so that the
	// buffers of a large batch are the only thing kept.
	clear(recs)
	if s.err != nil {
		return fmt.Errorf("kafka: %d of %d records of %d calls not written to %s: %w", s.failed, len(recs), len(events), s.p.cfg.Topic, s.err)
	}
	return nil
}

// encode fills s.buf and s.at with the records of events.
func (s *Sink) encode(events []apimeter.Event) {
	s.buf, s.at = s.buf[:0], s.at[:0]
	enc := s.p.cfg.Encoder
	for i := range events {
		e := &events[i]
		id := e.ID
		if !validID(id) {
			id = httpmsg.NewID()
		}
		key := len(s.buf)
		s.buf = append(s.buf, id...)
		keyEnd := len(s.buf)
		val := keyEnd
		if s.p.cfg.Format == FormatJSON {
			s.buf = capture.AppendEvent(s.buf, e)
			s.at = append(s.at, span{key: key, keyEnd: keyEnd, val: val, end: len(s.buf), event: i})
			continue
		}
		s.buf = enc.AppendRequest(s.buf, e, id)
		s.at = append(s.at, span{key: key, keyEnd: keyEnd, val: val, end: len(s.buf), part: RequestPartition, event: i})
		if e.Status == 0 {
			continue
		}
		val = len(s.buf)
		s.buf = enc.AppendResponse(s.buf, e, id)
		s.at = append(s.at, span{key: key, keyEnd: keyEnd, val: val, end: len(s.buf), part: ResponsePartition, resp: true, event: i})
	}
}

// validID reports whether id can be a message id as httpmsg.Decode reads
// it: 1 to MaxIDLen bytes of printable ASCII without spaces.
func validID(id string) bool {
	if id == "" || len(id) > httpmsg.MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// BorrowsEvents marks Sink as a capture.BorrowingSink.
func (s *Sink) BorrowsEvents() {}

// Close does nothing: Send has waited for every record, and the Producer
// is closed by its owner.
func (s *Sink) Close(context.Context) error { return nil }

var _ capture.BorrowingSink = (*Sink)(nil)
