package stats

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Expr is a parsed filter: a *Cond or a *Logic.
type Expr interface{ isExpr() }

// Filter operators, as spelled in Apigee's filter grammar.
const (
	opEq        = "eq"
	opNe        = "ne"
	opGt        = "gt"
	opLt        = "lt"
	opGe        = "ge"
	opLe        = "le"
	opIn        = "in"
	opNotIn     = "notin"
	opLike      = "like"
	opNotLike   = "not like"
	opIsNull    = "isnull"
	opIsNotNull = "isnotnull"
)

// Cond compares one dimension with literal values.
type Cond struct {
	Dim dimension
	Op  string
	// Values are the literals; for numeric dimensions compared with eq..le,
	// in or notin they hold whole numbers (Nums).
	Values []string
	Nums   []int64
}

// Logic joins two expressions with "and" or "or".
type Logic struct {
	Op   string
	L, R Expr
}

func (*Cond) isExpr()  {}
func (*Logic) isExpr() {}

// Limits that keep a hostile filter from costing much.
const (
	maxFilterLen   = 4096
	maxFilterDepth = 32
	maxInValues    = 1000
)

type tokKind int

const (
	tokEOF tokKind = iota
	tokLParen
	tokRParen
	tokComma
	tokString // quoted
	tokWord   // bare
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func lexFilter(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, token{tokLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, token{tokRParen, ")", i})
			i++
		case c == ',':
			toks = append(toks, token{tokComma, ",", i})
			i++
		case c == '\'' || c == '"':
			start := i
			q := c
			i++
			var b strings.Builder
			closed := false
			for i < len(s) {
				switch {
				case s[i] == '\\' && i+1 < len(s):
					b.WriteByte(s[i+1])
					i += 2
				case s[i] == q && i+1 < len(s) && s[i+1] == q:
					b.WriteByte(q)
					i += 2
				case s[i] == q:
					i++
					closed = true
				default:
					b.WriteByte(s[i])
					i++
				}
				if closed {
					break
				}
			}
			if !closed {
				return nil, fmt.Errorf("unterminated quoted string at position %d", start+1)
			}
			toks = append(toks, token{tokString, b.String(), start})
		default:
			start := i
			for i < len(s) && !strings.ContainsRune(" \t\n\r(),'\"", rune(s[i])) {
				i++
			}
			toks = append(toks, token{tokWord, s[start:i], start})
		}
	}
	return append(toks, token{tokEOF, "", len(s)}), nil
}

type filterParser struct {
	toks  []token
	i     int
	depth int
}

// ParseFilter parses Apigee's filter grammar: conditions "dim op value"
// with op one of eq ne gt lt ge le like "not like" (one value), in notin
// (comma-separated values, optionally in parentheses), isnull isnotnull (no
// value); joined by and (binding tighter) and or; grouped by parentheses.
// Values are quoted with ' or " (doubling or a backslash escapes the quote)
// or bare words. Keywords ignore case.
func ParseFilter(s string) (Expr, error) {
	if len(s) > maxFilterLen {
		return nil, fmt.Errorf("longer than %d characters", maxFilterLen)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	toks, err := lexFilter(s)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, fmt.Errorf("unexpected %q at position %d", t.text, t.pos+1)
	}
	return e, nil
}

func (p *filterParser) peek() token { return p.toks[p.i] }
func (p *filterParser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *filterParser) keyword(k string) bool {
	t := p.peek()
	return t.kind == tokWord && strings.EqualFold(t.text, k)
}

func (p *filterParser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &Logic{Op: "or", L: l, R: r}
	}
	return l, nil
}

func (p *filterParser) and() (Expr, error) {
	l, err := p.factor()
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		p.next()
		r, err := p.factor()
		if err != nil {
			return nil, err
		}
		l = &Logic{Op: "and", L: l, R: r}
	}
	return l, nil
}

func (p *filterParser) factor() (Expr, error) {
	t := p.peek()
	if t.kind == tokLParen {
		p.depth++
		if p.depth > maxFilterDepth {
			return nil, fmt.Errorf("parentheses nested deeper than %d", maxFilterDepth)
		}
		p.next()
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tokRParen {
			return nil, fmt.Errorf("missing ) at position %d", c.pos+1)
		}
		p.depth--
		return e, nil
	}
	return p.cond()
}

func (p *filterParser) cond() (Expr, error) {
	t := p.next()
	if t.kind != tokWord {
		if t.kind == tokEOF {
			return nil, fmt.Errorf("expected a dimension name at the end")
		}
		return nil, fmt.Errorf("expected a dimension name at position %d, got %q", t.pos+1, t.text)
	}
	d, ok := lookupDimension(strings.ToLower(t.text))
	if !ok {
		return nil, fmt.Errorf("unknown dimension %q at position %d; known: %s", t.text, t.pos+1, dimensionNames())
	}
	ot := p.next()
	if ot.kind != tokWord {
		return nil, fmt.Errorf("expected an operator after %s at position %d", t.text, ot.pos+1)
	}
	op := strings.ToLower(ot.text)
	if op == "not" {
		if !p.keyword("like") {
			return nil, fmt.Errorf("expected like after not at position %d", p.peek().pos+1)
		}
		p.next()
		op = opNotLike
	}
	c := &Cond{Dim: d, Op: op}
	switch op {
	case opIsNull, opIsNotNull:
		return c, nil
	case opEq, opNe, opGt, opLt, opGe, opLe, opLike, opNotLike:
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.Values = []string{v}
	case opIn, opNotIn:
		paren := p.peek().kind == tokLParen
		if paren {
			p.next()
		}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			c.Values = append(c.Values, v)
			if len(c.Values) > maxInValues {
				return nil, fmt.Errorf("more than %d values after %s", maxInValues, op)
			}
			if p.peek().kind != tokComma {
				break
			}
			p.next()
		}
		if paren {
			if r := p.next(); r.kind != tokRParen {
				return nil, fmt.Errorf("missing ) after the values of %s at position %d", op, r.pos+1)
			}
		}
	default:
		return nil, fmt.Errorf("unknown operator %q at position %d; use eq, ne, gt, lt, ge, le, in, notin, like, not like, isnull or isnotnull", ot.text, ot.pos+1)
	}
	if op == opLike || op == opNotLike {
		if err := checkLike(c.Values[0]); err != nil {
			return nil, err
		}
	}
	if d.numeric && op != opLike && op != opNotLike {
		for _, v := range c.Values {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s compares whole numbers; got %q", d.name, v)
			}
			c.Nums = append(c.Nums, n)
		}
	}
	return c, nil
}

func (p *filterParser) value() (string, error) {
	t := p.next()
	switch t.kind {
	case tokString:
		return t.text, nil
	case tokWord:
		switch strings.ToLower(t.text) {
		case "and", "or":
			return "", fmt.Errorf("expected a value at position %d, got %q", t.pos+1, t.text)
		}
		return t.text, nil
	case tokEOF:
		return "", fmt.Errorf("expected a value at the end")
	}
	return "", fmt.Errorf("expected a value at position %d, got %q", t.pos+1, t.text)
}
