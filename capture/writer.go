package capture

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/apimeter/apimeter"
)

// record is one call on its way from the handler to the Sink. Records are
// pooled, together with the request-body and response wrappers, so that
// capturing a call allocates almost nothing.
type record struct {
	c          *Capture
	start, end time.Time
	id         string

	method, host, requestURI, path, query, remoteAddr string
	tls                                               bool
	reqLen                                            int64
	reqHeaders, respHeaders                           apimeter.Headers

	reqBody  []byte // first MaxBodyBytes the handler read
	reqRead  int64  // bytes the handler read
	respBody []byte // first MaxBodyBytes written
	respSize int64
	status   int
	hijacked bool
	// outcome says how a call ended that did not end normally (Outcome*);
	// clientGone that a write to the client failed.
	outcome    string
	clientGone bool

	route, user, company, session, auth string
	metadata                            map[string]any
	target                              Target

	scratch []byte // the sender's: URI and Content-Length of a borrowed event

	rw   responseWriter
	body bodyReader
}

func (c *Capture) newRecord() *record {
	rec := &record{c: c}
	rec.rw.rec = rec
	rec.body.rec = rec
	if c.opts.LogBody {
		rec.reqBody = make([]byte, 0, c.opts.MaxBodyBytes)
		rec.respBody = make([]byte, 0, c.opts.MaxBodyBytes)
	}
	return rec
}

// reset readies rec for reuse. Fields that serve always sets are left
// alone, and the header slices keep their old strings until overwritten:
// clearing them showed up in profiles for nothing gained.
func (rec *record) reset() {
	rec.reqHeaders, rec.respHeaders = rec.reqHeaders[:0], rec.respHeaders[:0]
	rec.reqBody, rec.respBody = rec.reqBody[:0], rec.respBody[:0]
	rec.route, rec.user, rec.company, rec.session, rec.auth = "", "", "", "", ""
	rec.metadata = nil
	rec.target = Target{}
	rec.hijacked, rec.clientGone, rec.outcome = false, false, ""
	rec.reqRead, rec.respSize, rec.status = 0, 0, 0
	rec.rw.w, rec.rw.wroteHeader = nil, false
	rec.body.rc = nil
}

// appendHeaders flattens h, but for the header named skip, into dst without
// allocating unless a header has several values.
func appendHeaders(dst apimeter.Headers, h http.Header, skip string) apimeter.Headers {
	for k, vs := range h {
		if k == skip {
			continue
		}
		switch len(vs) {
		case 0:
		case 1:
			dst = append(dst, apimeter.Header{Name: k, Value: vs[0]})
		default:
			dst = append(dst, apimeter.Header{Name: k, Value: strings.Join(vs, ", ")})
		}
	}
	return dst
}

// keep appends as much of p to buf as its capacity allows.
func keep(buf, p []byte) []byte {
	if room := cap(buf) - len(buf); room > 0 {
		buf = append(buf, p[:min(room, len(p))]...)
	}
	return buf
}

// bodyReader copies what the handler reads of the request body, up to
// MaxBodyBytes, and passes every byte and error through unchanged. It never
// reads ahead of the handler.
type bodyReader struct {
	rc  io.ReadCloser
	rec *record
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.rec.reqRead += int64(n)
		b.rec.reqBody = keep(b.rec.reqBody, p[:n])
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.rc.Close() }

// responseWriter records status, headers, size and the first MaxBodyBytes of
// the response. wrap returns it as a type that implements exactly the
// optional interfaces (Flusher, Hijacker, ReaderFrom) the original does, and
// Unwrap lets http.ResponseController reach the original.
type responseWriter struct {
	w           http.ResponseWriter
	rec         *record
	wroteHeader bool
}

func (w *responseWriter) wrap(orig http.ResponseWriter) http.ResponseWriter {
	w.w = orig
	_, f := orig.(http.Flusher)
	_, h := orig.(http.Hijacker)
	_, r := orig.(io.ReaderFrom)
	switch {
	case f && h && r:
		return rwFHR{w}
	case f && h:
		return rwFH{w}
	case f && r:
		return rwFR{w}
	case h && r:
		return rwHR{w}
	case f:
		return rwF{w}
	case h:
		return rwH{w}
	case r:
		return rwR{w}
	}
	return w
}

func (w *responseWriter) Header() http.Header { return w.w.Header() }

// Unwrap returns the original ResponseWriter, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.w }

func (w *responseWriter) recordHeader(code int, h http.Header) {
	w.wroteHeader = true
	w.rec.status = code
	w.rec.respHeaders = appendHeaders(w.rec.respHeaders[:0], h, "")
}

func (w *responseWriter) WriteHeader(code int) {
	// Informational answers (other than 101) come before the real one.
	if !w.wroteHeader && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.recordHeader(code, w.w.Header())
	}
	w.w.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.recordHeader(http.StatusOK, w.w.Header())
	}
	n, err := w.w.Write(p)
	w.rec.respSize += int64(n)
	if writeFailed(err) {
		w.rec.clientGone = true
	}
	if w.rec.c.opts.LogBody {
		w.rec.respBody = keep(w.rec.respBody, p[:n])
	}
	return n, err
}

func (w *responseWriter) flush() {
	if !w.wroteHeader {
		w.recordHeader(http.StatusOK, w.w.Header())
	}
	w.w.(http.Flusher).Flush()
}

func (w *responseWriter) hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := w.w.(http.Hijacker).Hijack()
	if err == nil {
		w.rec.hijacked = true
		if !w.wroteHeader {
			w.recordHeader(http.StatusSwitchingProtocols, w.w.Header())
		}
	}
	return conn, rw, err
}

// readFrom lets the original ReaderFrom (sendfile on HTTP/1.1) do the copy;
// while the body capture has room it first copies that much through Write.
func (w *responseWriter) readFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.recordHeader(http.StatusOK, w.w.Header())
	}
	var total int64
	if w.rec.c.opts.LogBody {
		if room := cap(w.rec.respBody) - len(w.rec.respBody); room > 0 {
			n, err := io.Copy(writerOnly{w}, io.LimitReader(src, int64(room)))
			total += n
			if err != nil || n < int64(room) {
				return total, err
			}
		}
	}
	n, err := w.w.(io.ReaderFrom).ReadFrom(src)
	w.rec.respSize += n
	if err != nil {
		// Either side may have failed; the request's context tells
		// whether the client went away.
		w.rec.clientGone = w.rec.clientGone || isClientGone(err)
	}
	return total + n, err
}

// writerOnly hides ReadFrom so io.Copy uses Write.
type writerOnly struct{ w *responseWriter }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

type rwF struct{ *responseWriter }

func (w rwF) Flush() { w.flush() }

type rwH struct{ *responseWriter }

func (w rwH) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.hijack() }

type rwR struct{ *responseWriter }

func (w rwR) ReadFrom(src io.Reader) (int64, error) { return w.readFrom(src) }

type rwFH struct{ *responseWriter }

func (w rwFH) Flush()                                       { w.flush() }
func (w rwFH) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.hijack() }

type rwFR struct{ *responseWriter }

func (w rwFR) Flush()                                { w.flush() }
func (w rwFR) ReadFrom(src io.Reader) (int64, error) { return w.readFrom(src) }

type rwHR struct{ *responseWriter }

func (w rwHR) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.hijack() }
func (w rwHR) ReadFrom(src io.Reader) (int64, error)        { return w.readFrom(src) }

type rwFHR struct{ *responseWriter }

func (w rwFHR) Flush()                                       { w.flush() }
func (w rwFHR) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.hijack() }
func (w rwFHR) ReadFrom(src io.Reader) (int64, error)        { return w.readFrom(src) }
