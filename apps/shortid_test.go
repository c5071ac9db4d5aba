package apps_test

import (
	"strings"
	"testing"

	"github.com/apimeter/apimeter/apps"
)

// TestShortIDNeverShowsTheCredential: what logs print of an application
// id is a short piece of it, from which the id cannot be used.
func TestShortIDNeverShowsTheCredential(t *testing.T) {
	for _, id := range []string{apps.NewID("acme", "prod"), "eyJhcHAiOiIxMjM6NDU2In0.abcdefghijklmnopqrstuvwxyz", "plainidwithoutadot0123456789", "short"} {
		s := apps.ShortID(id)
		if len([]rune(s)) > 7 || !strings.HasSuffix(s, "…") || !strings.Contains(id, strings.TrimSuffix(s, "…")) {
			t.Errorf("ShortID(%q) = %q, want at most six characters of it and an ellipsis", id, s)
		}
	}
}
