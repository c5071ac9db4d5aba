package httpmsg

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/apimeter/apimeter"
)

// decodeNetHTTP is Decode as it was first written: the head rebuilt and
// read by net/http.ReadRequest or ReadResponse. It is kept as the
// reference Decode must agree with.
func decodeNetHTTP(b []byte) (Message, error) {
	var m Message
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return m, malformed("no line break")
	}
	first := string(bytes.TrimRight(b[:nl], "\r"))
	switch {
	case strings.HasPrefix(first, "request:"):
		m.Kind, m.ID = Request, first[len("request:"):]
	case strings.HasPrefix(first, "response:"):
		m.Kind, m.ID = Response, first[len("response:"):]
	default:
		return m, malformed("first line")
	}
	m.ID = strings.TrimSpace(m.ID)
	if err := checkID(m.ID); err != nil {
		return m, err
	}
	rest := b[nl+1:]
	var head, body []byte
	var prev *apimeter.Header
	found, headerLines := false, 0
	for pos, line := 0, 0; ; line++ {
		i := bytes.IndexByte(rest[pos:], '\n')
		if i < 0 {
			return m, malformed("no empty line")
		}
		text := bytes.TrimRight(rest[pos:pos+i], "\r")
		pos += i + 1
		if line > 0 && len(text) == 0 {
			body, found = rest[pos:], true
			break
		}
		if line == 0 {
			head = append(append(head, text...), "\r\n"...)
			continue
		}
		if text[0] == ' ' || text[0] == '\t' {
			if headerLines == 0 {
				return m, malformed("white space")
			}
			if prev != nil {
				prev.Value = strings.TrimSpace(prev.Value + " " + string(bytes.TrimSpace(text)))
			}
			head = append(append(head, text...), "\r\n"...)
			continue
		}
		name, value, ok := bytes.Cut(text, []byte(":"))
		if !ok || !validName(string(name)) {
			return m, malformed("header line")
		}
		headerLines++
		n := string(name)
		prev = nil
		if !secret(n) {
			m.Header = append(m.Header, apimeter.Header{Name: n, Value: string(bytes.TrimSpace(value))})
			prev = &m.Header[len(m.Header)-1]
		}
		// The framing headers frame nothing here: net/http reads them
		// under another name, so that their values are held to its rules
		// as every other header's.
		if strings.EqualFold(n, "Content-Length") || strings.EqualFold(n, "Transfer-Encoding") {
			head = append(head, "X-Unframed-"...)
		}
		head = append(append(head, text...), "\r\n"...)
	}
	if !found {
		return m, malformed("no empty line")
	}
	head = append(head, "\r\n"...)
	br := bufio.NewReader(bytes.NewReader(head))
	if m.Kind == Request {
		req, err := http.ReadRequest(br)
		if err != nil {
			return m, malformed("request line or headers: %v", err)
		}
		m.Method, m.Target = req.Method, req.RequestURI
		if !strings.HasPrefix(m.Target, "/") && m.Target != "*" && (req.URL == nil || req.URL.Host == "") {
			return m, malformed("request target")
		}
	} else {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return m, malformed("status line or headers: %v", err)
		}
		m.Status = res.StatusCode
		m.Reason = strings.TrimPrefix(strings.TrimPrefix(res.Status, strconv.Itoa(res.StatusCode)), " ")
		if m.Status < 100 || m.Status > 999 {
			return m, malformed("status")
		}
	}
	if len(body) > 0 {
		m.Body = append([]byte(nil), body...)
	}
	return m, nil
}

// FuzzDecodeAsNetHTTP checks that Decode accepts exactly what the
// reference built on net/http accepts, and reads it as the same message.
func FuzzDecodeAsNetHTTP(f *testing.F) {
	for _, dir := range []string{filepath.Join("..", "testdata", "apim", "*.txt"), filepath.Join("testdata", "fuzz", "FuzzRoundTrip", "*")} {
		files, _ := filepath.Glob(dir)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			if strings.Contains(dir, "fuzz") {
				// A corpus file of the go fuzz format: take its quoted value.
				s := string(b)
				if i := strings.Index(s, "[]byte("); i >= 0 {
					if v, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(s[i+len("[]byte("):]), ")")); err == nil {
						b = []byte(v)
					}
				}
			}
			f.Add(b)
		}
	}
	for _, s := range []string{
		"request:a\nGET /x HTTP/1.1\r\nauthorization: Bearer t\r\n X-Fold: y\r\n\r\nbody",
		"request:a\nGET /a%zz HTTP/1.1\r\n\r\n",
		"request:a\nGET /x HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
		"request:a\nGET /x HTTP/1.1\r\nX: a\x01b\r\n\r\n",
		"request:a\nCONNECT host:443 HTTP/1.1\r\n\r\n",
		"request:a\nGET http://h/p?q HTTP/1.0\r\n\r\n",
		"request:a\nGET x HTTP/1.1\r\n\r\n",
		"request:a\nGET /x HTTP/9\r\n\r\n",
		"response:b\nHTTP/1.1 +20 OK\r\n\r\n",
		"response:b\nHTTP/1.1  204\r\nX:\x80\r\n\r\n",
		"response:b\nHTTP/1.1 099 x\r\n\r\n",
		"response:b\nHTTP/2 200 OK\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gotErr := Decode(b)
		want, wantErr := decodeNetHTTP(b)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("Decode error %v, net/http reference error %v\nmessage %q", gotErr, wantErr, b)
		}
		if gotErr != nil {
			if !errors.Is(gotErr, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", gotErr)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode and the net/http reference differ\ngot  %+v\nwant %+v\nmessage %q", got, want, b)
		}
	})
}
