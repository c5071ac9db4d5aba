package meter

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// FuzzDecode: any body is either refused with an *EventError (or the
// content type error) or decoded into events whose flattened data agrees
// with the data kept: as many texts and numbers as keys, every key a path
// of the data, and the data valid JSON.
func FuzzDecode(f *testing.F) {
	f.Add(ContentTypeBatch, `[{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"c","data":{"a":{"b":"1.5"},"c":[1,{"d":2}],"a.b":3,"e":true,"f":null}}]`)
	f.Add(ContentTypeEvent, `{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"c","time":"2026-11-10T10:00:00.123+01:00","data":{"n":1e400,"m":-0}}`)
	f.Add(ContentTypeJSON, `[{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"c","data":{"x":1,"x":"2"}}]`)
	f.Add(ContentTypeJSON, `{"specversion":"1.0"`)
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, ctype, body string) {
		evs, err := Decode(ctype, []byte(body), "o", "e", now, Limits{MaxDepth: 20})
		if err != nil {
			if _, ok := err.(*EventError); !ok && err != ErrContentType {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for _, e := range evs {
			if len(e.Keys) != len(e.Str) || len(e.Keys) != len(e.Num) {
				t.Fatalf("keys %d, texts %d, numbers %d", len(e.Keys), len(e.Str), len(e.Num))
			}
			if !json.Valid(e.Data) || e.Data[0] != '{' {
				t.Fatalf("data kept is not a JSON object: %q", e.Data)
			}
			for i, k := range e.Keys {
				if _, err := ParsePath("$." + k); err != nil && isPlainPath(k) {
					t.Fatalf("key %q: %v", k, err)
				}
				if !math.IsNaN(e.Num[i]) && math.IsInf(e.Num[i], 0) {
					t.Fatalf("key %q: infinite number", k)
				}
			}
			if e.ID == "" || e.Source == "" || e.Type == "" || e.Subject == "" || e.Time.IsZero() {
				t.Fatalf("required field empty: %+v", e)
			}
		}
	})
}

// isPlainPath reports whether every segment of k is one ParsePath takes:
// not empty, and of letters, digits, _ and - only. A data key "" (or one
// that nests under "") is kept but no meter path can name it.
func isPlainPath(k string) bool {
	if k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
		return false
	}
	for _, r := range k {
		if !(r == '.' || r == '_' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}
