package stats

import "fmt"

// Restrict narrows p to the rows whose dimension dim equals value: the
// condition is ANDed in front of whatever filter p has, as a node of the
// plan, so no part of the request's filter (an or, a negation, another
// value of the same dimension) can widen it, and every aggregate, ranking
// (topk, offset) and time bucket is computed over the narrowed rows only.
// The customer portal reads through it with dim user_id or company_id.
// The daily table keeps neither column, so a restricted plan reads the
// events table.
func (p *Plan) Restrict(dim, value string) error {
	d, ok := lookupDimension(dim)
	if !ok || d.numeric {
		return fmt.Errorf("restrict: %q is not a text dimension", dim)
	}
	c := &Cond{Dim: d, Op: opEq, Values: []string{value}}
	if p.Filter == nil {
		p.Filter = c
	} else {
		p.Filter = &Logic{Op: "and", L: c, R: p.Filter}
	}
	p.Cover = nil
	return nil
}
