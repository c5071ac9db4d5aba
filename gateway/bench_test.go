package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/gateway"
)

// discardSink keeps nothing, like HTTPSink, so it may borrow the events.
type discardSink struct{}

func (discardSink) BorrowsEvents()                               {}
func (discardSink) Send(context.Context, []apimeter.Event) error { return nil }
func (discardSink) Close(context.Context) error                  { return nil }

// BenchmarkProxy compares, over loopback, one call through a bare
// httputil.ReverseProxy with the gateway's transport (the limit) and
// through the gateway with events built and dropped (sink none) or posted
// to a loopback endpoint that discards them (sink http). Read the ratios of
// ns/op; `apimeter bench gateway` is the load run.
func BenchmarkProxy(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	resp := append(append([]byte(`{"my_message":"`), payload[:1006]...), `"}`...)
	up := serveB(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(resp)
	}))
	collector := serveB(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	target, _ := url.Parse(up)
	bare := serveB(b, &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport: gateway.NewTransport(gateway.Timeouts{}),
	})
	cfg := gateway.Config{Upstreams: []gateway.Upstream{{Name: "accounts", URL: up, Routes: []string{"/accounts/{id}/message"}}}}
	mk := func(sink gateway.SinkFunc) string {
		g, err := gateway.New(cfg, gateway.Options{Sink: sink})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { g.Close(context.Background()) })
		return serveB(b, g)
	}
	none := mk(func(gateway.Upstream) (capture.Sink, error) { return discardSink{}, nil })
	viaHTTP := mk(gateway.CollectorSinks(collector, "bench", nil))
	for _, v := range []struct{ name, url string }{{"bare", bare}, {"gateway-sink-none", none}, {"gateway-sink-http", viaHTTP}} {
		b.Run(v.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			u := v.url + "/accounts/1001/message"
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(payload))
					req.Header.Set("Authorization", "Bearer "+guideToken)
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

func serveB(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
