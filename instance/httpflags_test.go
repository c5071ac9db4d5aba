package instance

import (
	"testing"
	"time"
)

func TestHTTPFlagsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    HTTPConfig
		ok   bool
	}{
		{"zero values take the defaults", HTTPConfig{}, true},
		{"short timeouts", HTTPConfig{ReadTimeout: time.Second, IdleTimeout: time.Millisecond, MaxConnections: 1}, true},
		{"negative read timeout", HTTPConfig{ReadTimeout: -time.Second}, false},
		{"negative idle timeout", HTTPConfig{IdleTimeout: -1}, false},
		{"negative max connections", HTTPConfig{MaxConnections: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tc.f, err, tc.ok)
			}
		})
	}
	d := HTTPConfig{}.withDefaults()
	if d.ReadTimeout != defaultReadTimeout || d.IdleTimeout != defaultIdleTimeout || d.MaxConnections != defaultMaxConnections {
		t.Fatalf("defaults not applied: %+v", d)
	}
}
