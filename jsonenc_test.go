package apimeter

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzAppendString checks that any string is encoded as a JSON string that
// decodes to the same text (invalid UTF-8 becoming U+FFFD).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\n", "é\u2028\u2029", "\xff\xfe", strings.Repeat("ab", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var w string
		json.Unmarshal(want, &w)
		if got != w {
			t.Fatalf("%q came back as %q, encoding/json gives %q", s, got, w)
		}
	})
}
