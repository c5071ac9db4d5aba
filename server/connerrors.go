package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
)

// net/http answers a request it cannot read (a header larger than
// http.Server.MaxHeaderBytes, a malformed request line) itself, as
// text/plain, before any handler runs, and has no hook to change that.
// JSONConnErrors rewrites those fixed answers on the connection, so that
// every answer of apimeter is the JSON error built by WriteError.

// plainConnErrors are the exact answers net/http writes on its own
// (net/http/server.go, conn.serve), and the APIErrors written instead.
var plainConnErrors = []struct {
	text string
	err  *APIError
}{
	{"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large",
		newError(http.StatusRequestHeaderFieldsTooLarge, "header_too_large", "the request's header is larger than the server accepts")},
	{"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
		newError(http.StatusBadRequest, "malformed_request", "the request could not be read as HTTP")},
}

// JSONConnErrors returns ln with each connection's answers from net/http
// itself (431 for a header too large, 400 for an unreadable request)
// written as JSON through WriteError.
func JSONConnErrors(ln net.Listener) net.Listener {
	l := &jsonErrListener{Listener: ln, answers: map[string][]byte{}}
	for _, pe := range plainConnErrors {
		l.answers[pe.text] = errorAnswer(pe.err)
	}
	return l
}

// errorAnswer is the whole HTTP/1.1 answer WriteError gives for err, on a
// connection about to close.
func errorAnswer(err *APIError) []byte {
	rec := &answerRecorder{h: http.Header{}}
	WriteError(rec, &http.Request{URL: &url.URL{}}, slog.New(slog.DiscardHandler), err)
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", rec.code, http.StatusText(rec.code))
	rec.h.Set("Content-Length", strconv.Itoa(rec.body.Len()))
	rec.h.Set("Connection", "close")
	rec.h.Write(&b)
	b.WriteString("\r\n")
	b.Write(rec.body.Bytes())
	return b.Bytes()
}

// answerRecorder is an http.ResponseWriter that keeps the answer.
type answerRecorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *answerRecorder) Header() http.Header         { return r.h }
func (r *answerRecorder) WriteHeader(code int)        { r.code = code }
func (r *answerRecorder) Write(p []byte) (int, error) { return r.body.Write(p) }

type jsonErrListener struct {
	net.Listener
	answers map[string][]byte
}

func (l *jsonErrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrConn{Conn: c, answers: l.answers}, nil
}

type jsonErrConn struct {
	net.Conn
	answers map[string][]byte
}

// Write passes p on, unless p is one of net/http's own plain answers,
// which it writes in one call (answers go through a buffered writer, so
// a handler's output never arrives as exactly that text).
func (c *jsonErrConn) Write(p []byte) (int, error) {
	if len(p) < 200 && bytes.HasPrefix(p, []byte("HTTP/1.1 4")) {
		if a, ok := c.answers[string(p)]; ok {
			if _, err := c.Conn.Write(a); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// CloseWrite lets net/http half-close the connection after such an
// answer, as it does on a bare TCP connection.
func (c *jsonErrConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
