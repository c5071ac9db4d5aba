package billing_test

import (
	"testing"

	"github.com/apimeter/apimeter/billing"
)

// FuzzVerify: a customer export from anywhere is read and verified
// without panicking, and a file that reads verifies the same twice.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"statement":{"org":"o","env":"prod","meter":"m","customer":"c","period":"2026-11","aggregation":"LATEST","value":1,"events":1,"digest":"x","publicKey":"AAAA","signature":"AA=="},"events":[{"source":"s","id":"1","time":"2026-11-02T00:00:00Z","value":1}]}`))
	f.Add([]byte(`{"statement":{"period":"9999-99","aggregation":"AVG"},"events":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ce, err := billing.ReadCustomerExport(b)
		if err != nil {
			return
		}
		d1, d2 := billing.Verify(ce, ""), billing.Verify(ce, "")
		if len(d1) != len(d2) {
			t.Fatalf("verify differs between runs: %v / %v", d1, d2)
		}
	})
}
