package stats

import (
	"regexp"
	"strings"
	"testing"
)

// FuzzLikeRegex: the RE2 expression a like pattern is rendered as (on
// DuckDB, for patterns that backtrack) compiles and matches exactly what
// SQL LIKE matches, for ASCII patterns and texts (where _ is one byte and
// one character alike); the wildcard check never panics.
func FuzzLikeRegex(f *testing.F) {
	for _, s := range [][2]string{{"%_%_#", "/v1/a#"}, {`a\%b%_`, "a%bcd"}, {"%a%_", "xxa\ny"}, {`\`, `\`}, {"_%.*%", "a.*"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, text string) {
		_ = checkLike(pattern)
		if len(pattern) > 24 || len(text) > 64 || strings.Count(pattern, "%") > 4 || !ascii(pattern) || !ascii(text) {
			return // the Go model backtracks too
		}
		re, err := regexp.Compile(`\A` + likeRegex(pattern) + `\z`)
		if err != nil {
			t.Fatalf("likeRegex(%q) = %q: %v", pattern, likeRegex(pattern), err)
		}
		if got, want := re.MatchString(text), likeMatch(text, pattern); got != want {
			t.Fatalf("%q like %q: RE2 %q says %v, LIKE says %v", text, pattern, likeRegex(pattern), got, want)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
