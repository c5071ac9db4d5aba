package loadrun

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// PhaseReport is what the clients of one series saw during one phase of a
// fault run: calls (or batches) by the phase they started in.
type PhaseReport struct {
	Name          string
	Calls, Errors int // started in the phase; not answered as they should be (or not at all)
	P50, P99, Max time.Duration
	// Statuses counts the answers by HTTP status (0: no answer: refused
	// or cut connection, timeout).
	Statuses map[int]int
}

// phases records what clients saw, by the phase each request started in.
// A run moves from phase to phase with next; series tell apart clients
// measured side by side (through the gateway, and straight to the
// upstream as the machine's baseline).
type phases struct {
	cur   atomic.Int32
	mu    sync.Mutex
	names []string
	at    []time.Time // when each phase started
	// samples[series][phase]
	samples map[int][][]sample
}

type sample struct {
	code int
	ok   bool
	took time.Duration
}

func newPhases(first string) *phases {
	return &phases{names: []string{first}, at: []time.Time{time.Now()}, samples: map[int][][]sample{}}
}

// next starts phase name.
func (p *phases) next(name string) {
	p.mu.Lock()
	p.names = append(p.names, name)
	p.at = append(p.at, time.Now())
	p.cur.Store(int32(len(p.names) - 1))
	p.mu.Unlock()
}

// now is the phase a request starting now belongs to.
func (p *phases) now() int { return int(p.cur.Load()) }

// phaseAt is the phase that was running at t.
func (p *phases) phaseAt(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := 0
	for i+1 < len(p.at) && !p.at[i+1].After(t) {
		i++
	}
	return i
}

// add records one request of series that started in phase.
func (p *phases) add(series, phase, code int, ok bool, took time.Duration) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.samples[series]
	for len(s) <= phase {
		s = append(s, nil)
	}
	s[phase] = append(s[phase], sample{code, ok, took})
	p.samples[series] = s
}

// reports sums up series phase by phase.
func (p *phases) reports(series int) []PhaseReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PhaseReport, len(p.names))
	for i, name := range p.names {
		pr := PhaseReport{Name: name, Statuses: map[int]int{}}
		var lat []time.Duration
		if s := p.samples[series]; i < len(s) {
			for _, x := range s[i] {
				pr.Calls++
				if !x.ok {
					pr.Errors++
				}
				pr.Statuses[x.code]++
				lat = append(lat, x.took)
			}
		}
		if len(lat) > 0 {
			slices.Sort(lat)
			pr.P50, pr.P99, pr.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
		}
		out[i] = pr
	}
	return out
}

// ms formats d in milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// printPhases writes ps as a Markdown table, with the answers by status
// when statuses is set; base, when not nil, is the same phases of the
// baseline series, shown beside them.
func printPhases(w io.Writer, what string, ps, base []PhaseReport, statuses bool) {
	if base == nil && !statuses {
		fmt.Fprintf(w, "| phase | %s | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |\n", what)
		for _, p := range ps {
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", p.Name, p.Calls, ms(p.P50), ms(p.P99), ms(p.Max))
		}
		return
	}
	if base == nil {
		fmt.Fprintf(w, "| phase | %s | client-visible errors | answers by status | p50 | p99 | max |\n| --- | ---: | ---: | --- | ---: | ---: | ---: |\n", what)
		for _, p := range ps {
			fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s |\n", p.Name, p.Calls, p.Errors, statusLine(p.Statuses), ms(p.P50), ms(p.P99), ms(p.Max))
		}
		return
	}
	fmt.Fprintf(w, "| phase | %s | client-visible errors | p50 | p99 | max | direct: p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n", what)
	for i, p := range ps {
		var b PhaseReport
		if i < len(base) {
			b = base[i]
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %s | %s |\n", p.Name, p.Calls, p.Errors, ms(p.P50), ms(p.P99), ms(p.Max), ms(b.P50), ms(b.P99), ms(b.Max))
	}
}
