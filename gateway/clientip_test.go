package gateway_test

import (
	"net/http"
	"testing"

	"github.com/apimeter/apimeter/gateway"
)

// TestTrustForwardedRecordsWhatTheProxyAppended: with trust_forwarded
// the recorded client is the address the proxy in front appended (the
// rightmost X-Forwarded-For entry), and always an IP address; before, the
// client-chosen leftmost value was recorded, even "not-an-ip<script>".
func TestTrustForwardedRecordsWhatTheProxyAppended(t *testing.T) {
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	sink := &keepSink{}
	g, gw := startGateway(t, gateway.Config{TrustForwarded: true, Upstreams: []gateway.Upstream{{Name: "a", URL: up}}}, gateway.Options{Sink: sinkTo(sink)})
	do(t, "GET", gw+"/spoofed", "", map[string]string{"X-Forwarded-For": "not-an-ip<script>"})
	do(t, "GET", gw+"/chain", "", map[string]string{"X-Forwarded-For": "1.2.3.4, 198.51.100.1"})
	flush(t, g)
	got := map[string]string{}
	for _, e := range sink.all() {
		got[e.Path] = e.ClientIP
	}
	if got["/spoofed"] != "127.0.0.1" || got["/chain"] != "198.51.100.1" {
		t.Fatalf("recorded client addresses %v, want /spoofed from 127.0.0.1 (the appended value is no IP) and /chain from 198.51.100.1", got)
	}
}
