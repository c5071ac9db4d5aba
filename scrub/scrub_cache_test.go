package scrub

import (
	"strconv"
	"testing"
)

// TestFingerprintCache checks that cached fingerprints are the fingerprints,
// before and after the cache fills and starts again.
func TestFingerprintCache(t *testing.T) {
	var c fingerprints
	for round := 0; round < 2; round++ {
		for i := 0; i < maxFingerprints+10; i += 997 {
			secret := "Bearer token-" + strconv.Itoa(i)
			if got, want := c.of(secret), Fingerprint(secret); got != want {
				t.Fatalf("round %d: fingerprint of %q = %q, want %q", round, secret, got, want)
			}
		}
	}
	for i := 0; i < maxFingerprints+10; i++ {
		c.of(strconv.Itoa(i))
	}
	if n := c.n.Load(); n > maxFingerprints {
		t.Fatalf("cache holds %d entries, bound is %d", n, maxFingerprints)
	}
	if got, want := c.of("x"), Fingerprint("x"); got != want {
		t.Fatalf("after the cache restarted: %q, want %q", got, want)
	}
}
