package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/kafka"
)

// TestCaptureToKafka puts the Producer behind the capture middleware, in
// both formats, and reads the calls back with a Consumer into a store:
// the Metrics API counts what the API served.
func TestCaptureToKafka(t *testing.T) {
	for _, format := range []kafka.Format{kafka.FormatAPIM, kafka.FormatJSON} {
		t.Run(string(format), func(t *testing.T) {
			c := newCluster(t)
			s := newStack(t)
			prod, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: c.ListenAddrs()}, Topic: topic, Format: format})
			if err != nil {
				t.Fatal(err)
			}
			capt, err := capture.New(capture.Options{Sink: prod, LogBody: true, FlushInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			api := httptest.NewServer(capt.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.Method {
				case http.MethodPost:
					w.WriteHeader(http.StatusCreated)
				case http.MethodDelete:
					w.WriteHeader(http.StatusNotFound)
				}
				io.WriteString(w, `{"ok":true}`)
			})))
			defer api.Close()
			want := map[string]int{}
			for i := 0; i < 60; i++ {
				method, status := []string{"GET", "POST", "DELETE"}[i%3], []int{200, 201, 404}[i%3]
				req, _ := http.NewRequest(method, api.URL+fmt.Sprintf("/items/%d", i), strings.NewReader(`{"a":1}`))
				req.Header.Set("authorization", "Bearer never-stored")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				want[fmt.Sprintf("%s,%d", method, status)]++
			}
			if err := capt.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st := capt.Stats(); st.Sent != 60 {
				t.Fatalf("capture stats %+v: want 60 sent", st)
			}
			cons, _ := startConsumer(t, c, s, "capture", nil, func(cfg *kafka.ConsumerConfig) { cfg.Format = format })
			waitFor(t, "the captured calls stored", 30*time.Second, func() (bool, string) {
				st := cons.Stats()
				return st.Stored == 60, fmt.Sprintf("%+v", st)
			})
			if got := s.byVerbStatus(t); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Metrics API: got %v, want %v", got, want)
			}
			var leaks int
			s.st.DB().QueryRow(`SELECT count(*) FROM events WHERE detail LIKE '%never-stored%'`).Scan(&leaks)
			if leaks != 0 {
				t.Errorf("%d events hold the bearer token", leaks)
			}
		})
	}
}

// TestEventHubsSettings connects as to Azure Event Hubs' Kafka endpoint —
// TLS, SASL PLAIN with user $ConnectionString and the connection string as
// password — to a kfake cluster that demands exactly that.
func TestEventHubsSettings(t *testing.T) {
	const connString = "Endpoint=sb://contoso-apim.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0"
	serverTLS, roots := selfSigned(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic), kfake.TLS(serverTLS),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", kafka.EventHubsUser, connString))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := kafka.EventHubs(connString)
	if err != nil {
		t.Fatal(err)
	}
	if conn.Brokers[0] != "contoso-apim.servicebus.windows.net:9093" || !conn.TLS || conn.SASLUser != "$ConnectionString" || conn.SASLPassword != connString {
		t.Fatalf("EventHubs settings: %+v", conn)
	}
	// Here the namespace is on loopback, with a certificate of its own.
	conn.Brokers, conn.TLSConfig = c.ListenAddrs(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	// Event Hubs takes gzip or no compression, not franz-go's default
	// snappy: note every codec the batches are written with.
	var codecsMu sync.Mutex
	codecs := map[int16]int{}
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, t := range kreq.(*kmsg.ProduceRequest).Topics {
			for _, p := range t.Partitions {
				if len(p.Records) > 22 { // a v2 record batch: attributes at bytes 21-22
					codecsMu.Lock()
					codecs[int16(binary.BigEndian.Uint16(p.Records[21:23]))&7]++
					codecsMu.Unlock()
				}
			}
		}
		return nil, nil, false // kfake handles the request as usual
	})

	s := newStack(t)
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Conn: conn, Topic: topic, Format: kafka.FormatAPIM})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(context.Background())
	calls := genCalls(5, 50, time.Now())
	for i := range calls {
		calls[i].noReq, calls[i].noResp = false, false
	}
	var rs = make([][]byte, 0)
	for i := range calls {
		rs = append(rs, calls[i].request(), calls[i].response())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := prod.SendMessages(ctx, rs); err != nil {
		t.Fatalf("produce over TLS and SASL: %v", err)
	}
	cons, _ := startConsumer(t, c, s, "eventhubs", nil, func(cfg *kafka.ConsumerConfig) { cfg.Conn = conn })
	waitFor(t, "the calls stored", 30*time.Second, func() (bool, string) {
		st := cons.Stats()
		return st.Stored == 50 && st.Pending == 0, fmt.Sprintf("%+v", st)
	})

	codecsMu.Lock()
	for codec := range codecs {
		if codec != 0 && codec != 1 {
			t.Errorf("batches written with compression codec %d (%v); Event Hubs takes only gzip (1) or none (0)", codec, codecs)
		}
	}
	codecsMu.Unlock()

	// A wrong password is refused.
	bad := conn
	bad.SASLPassword = "Endpoint=sb://contoso-apim.servicebus.windows.net/;SharedAccessKey=wrong"
	wrong, err := kafka.NewProducer(kafka.ProducerConfig{Conn: bad, Topic: topic, Format: kafka.FormatAPIM})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close(context.Background())
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	if err := wrong.SendMessages(sctx, rs[:1]); err == nil {
		t.Fatal("a wrong connection string was accepted")
	}
}

// selfSigned returns a server TLS config for 127.0.0.1 and the pool that
// trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}, roots
}

// TestProducerBrokersDown: with no broker to take them, Send gives up
// after DeliveryTimeout rather than holding the capture's sender forever.
func TestProducerBrokersDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: []string{addr}}, Topic: topic, Format: kafka.FormatAPIM, DeliveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- prod.SendMessages(context.Background(), [][]byte{[]byte("request:1\nGET / HTTP/1.1\r\n\r\n")})
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Send succeeded with no broker")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Send still waiting 20 s after a 1 s delivery timeout")
	}
}

// TestCheckTopic: the producer tells a missing topic, and a topic the apim
// format cannot use, before any record fails; it creates nothing.
func TestCheckTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "two"), kfake.SeedTopics(1, "one"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check := func(brokers []string, topic string, format kafka.Format) error {
		prod, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: brokers}, Topic: topic, Format: format})
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return prod.CheckTopic(ctx)
	}
	for _, tc := range []struct {
		topic  string
		format kafka.Format
		want   string // empty: no error
	}{
		{"two", kafka.FormatAPIM, ""},
		{"one", kafka.FormatJSON, ""},
		{"one", kafka.FormatAPIM, "has 1 partition(s)"},
		{"missing", kafka.FormatJSON, "does not exist"},
		{"missing", kafka.FormatJSON, "does not exist"}, // still: the check created nothing
	} {
		err := check(c.ListenAddrs(), tc.topic, tc.format)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("topic %s, format %s: got %v, want %q", tc.topic, tc.format, err, tc.want)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := check([]string{addr}, "two", kafka.FormatAPIM); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("no broker: got %v, want an error saying the brokers did not answer", err)
	}
}
