// Package progress reports long work on a terminal: one line, rewritten in
// place, with what is done of the total, the rate and the time left. When
// its output is not a terminal (a log file, a pipe, CI) it prints nothing,
// so logs stay clean; the caller prints its own summary either way.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Interval is how often the line is rewritten.
const Interval = 250 * time.Millisecond

// Bar counts work done; it is safe for concurrent use. A nil *Bar counts
// nothing and prints nothing.
type Bar struct {
	w     io.Writer
	label string
	unit  string
	total int64
	began time.Time
	done  atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Start begins a report of total units (calls, events, rounds) on f when f
// is a terminal, and returns nil otherwise. label names the work.
func Start(f *os.File, label, unit string, total int64) *Bar {
	if f == nil || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return StartOn(f, label, unit, total)
}

// StartOn begins a report on w whatever w is (Start decides for a file).
func StartOn(w io.Writer, label, unit string, total int64) *Bar {
	b := &Bar{w: w, label: label, unit: unit, total: total, began: time.Now(), stop: make(chan struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(Interval)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case now := <-t.C:
				fmt.Fprint(b.w, "\r"+b.Line(b.done.Load(), now.Sub(b.began))+"\x1b[K")
			}
		}
	}()
	return b
}

// Add counts n more units done.
func (b *Bar) Add(n int64) {
	if b != nil {
		b.done.Add(n)
	}
}

// Finish stops the report, leaving its last line (with the time taken)
// and a newline.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.once.Do(func() {
		close(b.stop)
		b.wg.Wait()
		fmt.Fprint(b.w, "\r"+b.Line(b.done.Load(), time.Since(b.began))+"\x1b[K\n")
	})
}

// Line is the report of done units after elapsed: "backfill: 12000 / 300000
// calls (4.0 %), 23512 calls/s, 12s left" ("... in 13s" once all is done).
func (b *Bar) Line(done int64, elapsed time.Duration) string {
	s := fmt.Sprintf("%s: %d / %d %s", b.label, done, b.total, b.unit)
	if b.total > 0 {
		s += fmt.Sprintf(" (%.1f %%)", 100*float64(done)/float64(b.total))
	}
	sec := elapsed.Seconds()
	if sec <= 0 || done <= 0 {
		return s
	}
	rate := float64(done) / sec
	s += fmt.Sprintf(", %.0f %s/s", rate, b.unit)
	switch {
	case done >= b.total:
		s += ", in " + elapsed.Round(100*time.Millisecond).String()
	default:
		left := time.Duration(float64(b.total-done) / rate * float64(time.Second))
		s += ", " + left.Round(time.Second).String() + " left"
	}
	return s
}
