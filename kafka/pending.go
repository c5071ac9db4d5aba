package kafka

import (
	"time"

	"github.com/apimeter/apimeter/httpmsg"
)

// half is a request or response waiting for the other half of its call.
type half struct {
	msg       httpmsg.Message
	ts        time.Time // record timestamp
	seq       int64     // records the consumer had read when it arrived
	at        time.Time // when it arrived (wall clock)
	partition int32
	slot      *slot // its place in its partition's offset queue
	done      bool  // paired or flagged; only the FIFO still holds it
}

// slot is one unresolved offset of a partition.
type slot struct {
	offset   int64
	resolved bool
}

// partState is what the consumer knows of one assigned partition.
type partState struct {
	next       int64 // offset after the last record consumed; -1 before any
	hwm        int64 // high watermark at the last fetch; -1 when unknown
	lastTS     time.Time
	queue      []*slot // unresolved offsets, oldest first
	committed  int64   // last offset committed; -1 before any
	consumed   int64
	malformed  int64
	seen       bool
	assignedAt time.Time
	// end is the partition's end offset as listed at endAt (-1 before
	// any): every record written before endAt has an offset below end.
	end   int64
	endAt time.Time
}

// commitOffset is the offset up to which everything before is durably
// handled: the oldest still unresolved, or the next to read.
func (p *partState) commitOffset() int64 {
	for len(p.queue) > 0 && p.queue[0].resolved {
		p.queue[0] = nil
		p.queue = p.queue[1:]
	}
	if len(p.queue) > 0 {
		return p.queue[0].offset
	}
	return p.next
}

func (p *partState) lag() int64 {
	hwm := max(p.hwm, p.end)
	if hwm < 0 || p.next < 0 {
		return 0
	}
	if l := hwm - p.next; l > 0 {
		return l
	}
	return 0
}

// pendingTable holds unpaired halves by message id, bounded, with a FIFO in
// arrival order for expiry.
type pendingTable struct {
	byID map[string]*half
	fifo []*half
	live int
}

func newPendingTable() *pendingTable { return &pendingTable{byID: map[string]*half{}} }

func (t *pendingTable) add(h *half) {
	t.byID[h.msg.ID] = h
	t.fifo = append(t.fifo, h)
	t.live++
}

// take removes and returns the half waiting under id, if any.
func (t *pendingTable) take(id string) *half {
	h, ok := t.byID[id]
	if !ok {
		return nil
	}
	delete(t.byID, id)
	h.done = true
	t.live--
	return h
}

// expire removes and returns, oldest first, the halves written before
// cutoff that also arrived before the arrival window (seq at most seqCutoff,
// or at before atCutoff), and the oldest beyond max live halves. Record
// time alone is not enough: a replayed or lagging hub delivers records
// long after their timestamps, and a request must still wait for the
// response that arrives after it.
func (t *pendingTable) expire(cutoff time.Time, seqCutoff int64, atCutoff time.Time, max int) []*half {
	var out []*half
	i := 0
	for ; i < len(t.fifo); i++ {
		h := t.fifo[i]
		if h.done {
			t.fifo[i] = nil
			continue
		}
		waited := h.ts.Before(cutoff) && (h.seq <= seqCutoff || h.at.Before(atCutoff))
		if !waited && t.live <= max {
			break
		}
		t.fifo[i] = nil
		delete(t.byID, h.msg.ID)
		h.done = true
		t.live--
		out = append(out, h)
	}
	t.fifo = t.fifo[i:]
	if cap(t.fifo) > 1024 && len(t.fifo) < cap(t.fifo)/4 {
		t.fifo = append([]*half(nil), t.fifo...)
	}
	return out
}

// dropPartitions forgets the halves read from the given partitions: they
// will be read again by whoever owns those partitions next.
func (t *pendingTable) dropPartitions(gone map[int32]bool) {
	for id, h := range t.byID {
		if gone[h.partition] {
			delete(t.byID, id)
			h.done = true
			t.live--
		}
	}
}
