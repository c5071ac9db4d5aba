package httpmsg

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/apimeter/apimeter"
)

// Kind says whether a message carries a request or a response.
type Kind uint8

// The kinds of message.
const (
	Request Kind = iota + 1
	Response
)

func (k Kind) String() string {
	switch k {
	case Request:
		return "request"
	case Response:
		return "response"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// DefaultBodyLimit is the policy's body cut, in characters.
const DefaultBodyLimit = 1024

// MaxIDLen bounds a message id; the policy's are 36-character GUIDs.
const MaxIDLen = 128

// SecretHeaders are never written and are dropped when read, compared
// without case. The APIM policy compares them with case, so the
// lower-case names HTTP/2 clients send reach the event hub; Decode removes
// them.
var SecretHeaders = []string{"Authorization", "Ocp-Apim-Subscription-Key"}

// Message is one request or response message.
type Message struct {
	Kind Kind
	// ID pairs a request with its response.
	ID string
	// Method and Target (path and query string, as in the request line)
	// are set on requests.
	Method string
	Target string
	// Status and Reason are set on responses.
	Status int
	Reason string
	// Header keeps the headers in the order and case they were sent, with
	// secrets removed. Values the policy joined with ", " stay joined.
	Header apimeter.Headers
	// Body is the body as carried: already cut by the sender.
	Body []byte
}

// NewID returns a fresh message id (a random UUID, as the policy's
// Guid.NewGuid()).
func NewID() string { return uuid.NewString() }

// Encoder writes messages. Its zero value writes them as the policy does.
type Encoder struct {
	// BodyLimit is the number of characters of a body written. Zero means
	// DefaultBodyLimit; negative writes no body.
	BodyLimit int
}

// Append appends m in the policy's form to dst. Secret headers and header
// lines that would break the message (a name that is not a token, a value
// holding a line break) are left out.
func (enc Encoder) Append(dst []byte, m *Message) []byte {
	switch m.Kind {
	case Request:
		dst = append(dst, "request:"...)
		dst = append(dst, m.ID...)
		dst = append(dst, '\n')
		dst = append(dst, m.Method...)
		dst = append(dst, ' ')
		dst = append(dst, m.Target...)
		dst = append(dst, " HTTP/1.1\r\n"...)
	default:
		dst = append(dst, "response:"...)
		dst = append(dst, m.ID...)
		dst = append(dst, "\nHTTP/1.1 "...)
		dst = strconv.AppendInt(dst, int64(m.Status), 10)
		dst = append(dst, ' ')
		dst = append(dst, m.Reason...)
		dst = append(dst, "\r\n"...)
	}
	dst = appendHeaderLines(dst, m.Header)
	return append(dst, CutBody(m.Body, enc.limit())...)
}

// appendHeaderLines appends h as header lines and the empty line that ends
// them, leaving out secret headers and lines that would break the message
// (a name that is not a token, a value holding a line break).
func appendHeaderLines(dst []byte, h apimeter.Headers) []byte {
	for _, h := range h {
		if secret(h.Name) || !validName(h.Name) || strings.ContainsAny(h.Value, "\r\n") {
			continue
		}
		dst = append(dst, h.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, h.Value...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

func (enc Encoder) limit() int {
	switch {
	case enc.BodyLimit == 0:
		return DefaultBodyLimit
	case enc.BodyLimit < 0:
		return 0
	}
	return enc.BodyLimit
}

// CutBody returns the first limit characters of b: UTF-8 characters when b
// is UTF-8, bytes otherwise. (The policy counts UTF-16 code units; the two
// agree outside the astral planes.)
func CutBody(b []byte, limit int) []byte {
	if len(b) <= limit {
		return b
	}
	if !utf8.Valid(b) {
		return b[:limit]
	}
	n := 0
	for i := range string(b) {
		if n == limit {
			return b[:i]
		}
		n++
	}
	return b
}

func secret(name string) bool {
	for _, s := range SecretHeaders {
		if strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}

// validName reports whether name is an HTTP token, as a header name must be.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// ErrMalformed is wrapped by every error Decode returns.
var ErrMalformed = errors.New("malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Decode reads one message as the policy writes it. It accepts what the
// policy really sends: a body shorter than its Content-Length (cut at 1024
// characters) or without one, no Host, header names in any case, non-ASCII
// bodies. The body is everything after the empty line that ends the
// headers; Content-Length and Transfer-Encoding are kept as headers but do
// not frame it. The request or status line and the headers are held to
// net/http's rules (FuzzDecodeAsNetHTTP checks that both accept the same
// messages alike) without its cost. Secret headers are dropped whatever
// their case. Errors wrap ErrMalformed and say what is wrong.
func Decode(b []byte) (Message, error) {
	var m Message
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return m, malformed("no line break after the first line (want request:<id> or response:<id>)")
	}
	first := bytes.TrimRight(b[:nl], "\r")
	switch {
	case bytes.HasPrefix(first, []byte("request:")):
		m.Kind, m.ID = Request, string(bytes.TrimSpace(first[len("request:"):]))
	case bytes.HasPrefix(first, []byte("response:")):
		m.Kind, m.ID = Response, string(bytes.TrimSpace(first[len("response:"):]))
	default:
		return m, malformed("first line %q is not request:<id> or response:<id>", clip(string(first)))
	}
	if err := checkID(m.ID); err != nil {
		return m, err
	}
	rest := b[nl+1:]

	var start []byte // the request or status line
	var body []byte
	found, headerLines, hosts := false, 0, 0
	var prev *apimeter.Header // the last header kept, which a folded line continues
	for pos, line := 0, 0; ; line++ {
		i := bytes.IndexByte(rest[pos:], '\n')
		if i < 0 {
			return m, malformed("no empty line ends the %s's headers", m.Kind)
		}
		text := bytes.TrimRight(rest[pos:pos+i], "\r")
		pos += i + 1
		if line > 0 && len(text) == 0 {
			body, found = rest[pos:], true
			break
		}
		if line == 0 {
			start = text
			continue
		}
		if text[0] == ' ' || text[0] == '\t' {
			// An obsolete folded line continues the previous value.
			if headerLines == 0 {
				return m, malformed("header line %d starts with white space", line)
			}
			if !validValue(text) {
				return m, malformed("%s line or headers: header line %d holds a control character", startName(m.Kind), line)
			}
			if prev != nil {
				prev.Value = strings.TrimSpace(prev.Value + " " + string(bytes.TrimSpace(text)))
			}
			continue
		}
		name, value, ok := bytes.Cut(text, []byte(":"))
		if !ok {
			return m, malformed("header line %d %q has no colon", line, clip(string(text)))
		}
		if !validName(string(name)) {
			return m, malformed("header line %d: %q is not a header name", line, clip(string(name)))
		}
		if !validValue(value) {
			return m, malformed("%s line or headers: header line %d holds a control character", startName(m.Kind), line)
		}
		headerLines++
		if asciiEqualFold(name, "Host") {
			hosts++
		}
		prev = nil
		if !secretBytes(name) {
			m.Header = append(m.Header, apimeter.Header{Name: string(name), Value: string(bytes.TrimSpace(value))})
			prev = &m.Header[len(m.Header)-1]
		}
	}
	if !found {
		return m, malformed("no empty line ends the headers")
	}
	var err error
	if m.Kind == Request {
		err = m.requestLine(start, hosts)
	} else {
		err = m.statusLine(start)
	}
	if err != nil {
		return m, err
	}
	if len(body) > 0 {
		m.Body = append([]byte(nil), body...)
	}
	return m, nil
}

func startName(k Kind) string {
	if k == Request {
		return "request"
	}
	return "status"
}

// requestLine reads "METHOD target HTTP/x.y" as net/http.ReadRequest does.
func (m *Message) requestLine(line []byte, hosts int) error {
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	switch {
	case !ok1 || !ok2:
		return malformed("request line or headers: malformed HTTP request %q", clip(string(line)))
	case !validName(string(method)):
		return malformed("request line or headers: invalid method %q", clip(string(method)))
	}
	if _, _, ok := http.ParseHTTPVersion(string(proto)); !ok {
		return malformed("request line or headers: malformed HTTP version %q", clip(string(proto)))
	}
	m.Method, m.Target = string(method), string(target)
	raw := m.Target
	justAuthority := m.Method == "CONNECT" && !strings.HasPrefix(raw, "/")
	if justAuthority {
		raw = "http://" + raw
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return malformed("request line or headers: %v", err)
	}
	if hosts > 1 {
		return malformed("request line or headers: too many Host headers")
	}
	if !strings.HasPrefix(m.Target, "/") && m.Target != "*" && u.Host == "" {
		// The policy writes Url.Path + QueryString; an absolute URI is
		// kept as sent.
		return malformed("request target %q is neither a path nor an absolute URI", clip(m.Target))
	}
	return nil
}

// statusLine reads "HTTP/x.y code reason" as net/http.ReadResponse does.
func (m *Message) statusLine(line []byte) error {
	proto, status, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return malformed("status line or headers: malformed HTTP response %q", clip(string(line)))
	}
	status = bytes.TrimLeft(status, " ")
	code, _, _ := bytes.Cut(status, []byte(" "))
	n, err := strconv.Atoi(string(code))
	if len(code) != 3 || err != nil || n < 0 {
		return malformed("status line or headers: malformed HTTP status code %q", clip(string(code)))
	}
	if _, _, ok := http.ParseHTTPVersion(string(proto)); !ok {
		return malformed("status line or headers: malformed HTTP version %q", clip(string(proto)))
	}
	m.Status = n
	m.Reason = strings.TrimPrefix(strings.TrimPrefix(string(status), strconv.Itoa(n)), " ")
	if m.Status < 100 || m.Status > 999 {
		return malformed("status %d is not an HTTP status", m.Status)
	}
	return nil
}

// validValue reports whether v holds only bytes a header value may: no
// control character but the tab (obs-text allowed), as net/textproto.
func validValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func secretBytes(name []byte) bool {
	for _, s := range SecretHeaders {
		if asciiEqualFold(name, s) {
			return true
		}
	}
	return false
}

// asciiEqualFold compares a header name with s without case, without
// converting it to a string.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func checkID(id string) error {
	if id == "" {
		return malformed("empty message id")
	}
	if len(id) > MaxIDLen {
		return malformed("message id longer than %d bytes", MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return malformed("message id %q holds a character that is not printable ASCII", clip(id))
		}
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func httpReason(status int) string { return http.StatusText(status) }
