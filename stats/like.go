package stats

import (
	"fmt"
	"regexp"
	"strings"
)

// MaxLikeWildcards is the most wildcards (% and _, unescaped) a like
// pattern of a filter may hold; more is a 400 naming the limit. Real
// patterns hold a few; the bound keeps what one pattern can cost every
// engine small and known.
const MaxLikeWildcards = 32

// checkLike refuses a like pattern with more than MaxLikeWildcards
// wildcards.
func checkLike(pattern string) error {
	n := 0
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			i++
		case '%', '_':
			n++
		}
	}
	if n > MaxLikeWildcards {
		return fmt.Errorf("like pattern %.40q… holds %d wildcards (%% and _); at most %d are allowed", pattern, n, MaxLikeWildcards)
	}
	return nil
}

// regexLiker is a dialect that can match a regular expression in linear
// time (RE2), used in place of its LIKE where LIKE would not be.
type regexLiker interface {
	// RegexLike is expr matching the whole of the RE2 expression in the
	// placeholder re, or not.
	RegexLike(expr, re string, not bool) string
}

// like renders expr [NOT] LIKE pattern. DuckDB matches a pattern holding
// % and _ by backtracking: each % tries every position of the rest of
// the text, so the time grows as the text's length to the power of the
// number of % (36 "%_" pairs never end on a few thousand rows), and the
// engine checks for interruption only between rows, so no deadline stops
// it. Such a pattern with two or more % is rendered as the same match by
// RE2, whose time is linear in the text (about 2.2 times LIKE's on a
// benign pattern, BenchmarkLikeRE2); other patterns keep LIKE, which
// DuckDB turns into prefix, suffix and contains matches, and which with
// one % is linear too.
func (b *sqlBuilder) like(expr, pattern string, not bool) string {
	if r, ok := b.d.(regexLiker); ok && backtracks(pattern) {
		return r.RegexLike(expr, b.arg(likeRegex(pattern)), not)
	}
	return b.d.Like(expr, b.arg(pattern), not)
}

// backtracks reports whether pattern holds an unescaped _ and two or
// more unescaped %.
func backtracks(pattern string) bool {
	var pct int
	var under bool
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			i++
		case '%':
			pct++
		case '_':
			under = true
		}
	}
	return pct >= 2 && under
}

// likeRegex is the RE2 expression matching what the LIKE pattern (with
// backslash as its escape) matches: % any run of characters, _ one
// character, anything else itself.
func likeRegex(pattern string) string {
	var sb strings.Builder
	sb.WriteString("(?s)")
	lit := func(s string) { sb.WriteString(regexp.QuoteMeta(s)) }
	for i := 0; i < len(pattern); {
		c := pattern[i]
		switch {
		case c == '\\' && i+1 < len(pattern):
			// The escaped character, whole (it may take several bytes).
			j := i + 2
			for j < len(pattern) && pattern[j]&0xC0 == 0x80 {
				j++
			}
			lit(pattern[i+1 : j])
			i = j
			continue
		case c == '%':
			// A run of % is one .*: fewer states for the engine.
			sb.WriteString(".*")
			for i+1 < len(pattern) && pattern[i+1] == '%' {
				i++
			}
		case c == '_':
			sb.WriteByte('.')
		default:
			lit(string(c))
		}
		i++
	}
	return sb.String()
}
