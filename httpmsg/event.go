package httpmsg

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/jsontext"
)

// Orphan flags, written in an event's metadata as "apim_orphan".
const (
	// NoResponse marks a request whose response never came: the event has
	// status 0.
	NoResponse = "no_response"
	// NoRequest marks a response whose request never came: the event has
	// no method or path.
	NoRequest = "no_request"
)

// ToEvent turns a request and its response into one call. Either may be
// nil (not both): the event is then flagged in its metadata
// ("apim_orphan"). reqTime and respTime are when the two messages were
// written (their record timestamps); the latency is the time between them.
// The event's id is the message id, so a message delivered twice is stored
// once. Org and Env are left for the caller.
func ToEvent(req, resp *Message, reqTime, respTime time.Time) apimeter.Event {
	e := apimeter.Event{Direction: apimeter.Incoming, Weight: 1, RequestSize: -1, ResponseSize: -1}
	orphan := ""
	switch {
	case req == nil:
		orphan = NoRequest
		e.ID = resp.ID
		reqTime = respTime
	case resp == nil:
		orphan = NoResponse
		e.ID = req.ID
		respTime = reqTime
	default:
		e.ID = req.ID
	}
	e.RequestTime, e.ResponseTime = reqTime.UTC(), respTime.UTC()
	if d := respTime.Sub(reqTime); d > 0 {
		e.LatencyMs = float64(d.Microseconds()) / 1000
	}
	if req != nil {
		e.Method = req.Method
		e.URI = uri(req)
		e.Path, e.Query, _ = strings.Cut(req.Target, "?")
		if i := strings.Index(e.Path, "://"); i >= 0 {
			// An absolute target: keep only its path.
			p := e.Path[i+3:]
			if j := strings.IndexByte(p, '/'); j >= 0 {
				e.Path = p[j:]
			} else {
				e.Path = "/"
			}
		}
		e.RequestHeaders = req.Header
		e.RequestBody = body(req.Body, req.Header)
		e.RequestSize = size(req.Body, req.Header)
		e.UserAgent = req.Header.Get("User-Agent")
		if xff := req.Header.Get("X-Forwarded-For"); xff != "" {
			ip, _, _ := strings.Cut(xff, ",")
			e.ClientIP = strings.TrimSpace(ip)
		}
	}
	if resp != nil {
		e.Status = resp.Status
		e.ResponseHeaders = resp.Header
		e.ResponseBody = body(resp.Body, resp.Header)
		e.ResponseSize = size(resp.Body, resp.Header)
	}
	md := make([]byte, 0, 96)
	md = jsontext.AppendString(append(md, `{"apim_message_id":`...), e.ID)
	if orphan != "" {
		md = append(append(append(md, `,"apim_orphan":"`...), orphan...), '"')
	}
	e.Metadata = append(md, '}')
	return e
}

// uri is the request's full URI when its Host is known. The policy does not
// write the scheme; APIM gateways serve HTTPS unless X-Forwarded-Proto says
// otherwise.
func uri(req *Message) string {
	host := req.Header.Get("Host")
	if host == "" || !strings.HasPrefix(req.Target, "/") {
		return req.Target
	}
	scheme := "https"
	if p := req.Header.Get("X-Forwarded-Proto"); p == "http" {
		scheme = p
	}
	return scheme + "://" + host + req.Target
}

// body is b as an event body: text when it is, base64 otherwise, marked
// truncated when the message carries less than its Content-Length says.
func body(b []byte, h apimeter.Headers) apimeter.Body {
	if len(b) == 0 {
		return apimeter.Body{}
	}
	out := apimeter.Body{}
	if utf8.Valid(b) {
		out.Text = string(b)
	} else {
		out.Text, out.Base64 = base64.StdEncoding.EncodeToString(b), true
	}
	if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && n > int64(len(b)) {
		out.Truncated = true
	}
	return out
}

// size is the body's size as sent: its Content-Length when given and at
// least what the message carries, else what the message carries.
func size(b []byte, h apimeter.Headers) int64 {
	if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && n >= int64(len(b)) {
		return n
	}
	return int64(len(b))
}

// FromEvent is the pair of messages the policy would have written for e,
// under message id id (use NewID). resp is nil when the call had no
// response (status 0).
func FromEvent(e *apimeter.Event, id string) (req Message, resp *Message) {
	target := e.Path
	if target == "" {
		target = "/"
	}
	if e.Query != "" {
		target += "?" + e.Query
	}
	req = Message{Kind: Request, ID: id, Method: e.Method, Target: target, Header: e.RequestHeaders, Body: rawBody(e.RequestBody)}
	if req.Method == "" {
		req.Method = "GET"
	}
	if e.Status == 0 {
		return req, nil
	}
	resp = &Message{Kind: Response, ID: id, Status: e.Status, Reason: httpReason(e.Status), Header: e.ResponseHeaders, Body: rawBody(e.ResponseBody)}
	return req, resp
}

func rawBody(b apimeter.Body) []byte {
	if b.Base64 {
		raw, err := base64.StdEncoding.DecodeString(b.Text)
		if err != nil {
			return nil
		}
		return raw
	}
	return []byte(b.Text)
}

// AppendRequest appends to dst the request message of e under message id
// id: the bytes enc.Append writes for FromEvent's request, without
// building the message or copying the body first (a Kafka producer writes
// one per captured call).
func (enc Encoder) AppendRequest(dst []byte, e *apimeter.Event, id string) []byte {
	dst = append(dst, "request:"...)
	dst = append(dst, id...)
	dst = append(dst, '\n')
	if e.Method == "" {
		dst = append(dst, "GET"...)
	} else {
		dst = append(dst, e.Method...)
	}
	dst = append(dst, ' ')
	if e.Path == "" {
		dst = append(dst, '/')
	} else {
		dst = append(dst, e.Path...)
	}
	if e.Query != "" {
		dst = append(dst, '?')
		dst = append(dst, e.Query...)
	}
	dst = append(dst, " HTTP/1.1\r\n"...)
	dst = appendHeaderLines(dst, e.RequestHeaders)
	return enc.appendBody(dst, e.RequestBody)
}

// AppendResponse appends to dst the response message of e under message id
// id, as AppendRequest does for the request. A call without a response
// (status 0) has none: dst is returned as it is.
func (enc Encoder) AppendResponse(dst []byte, e *apimeter.Event, id string) []byte {
	if e.Status == 0 {
		return dst
	}
	dst = append(dst, "response:"...)
	dst = append(dst, id...)
	dst = append(dst, "\nHTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(e.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, httpReason(e.Status)...)
	dst = append(dst, "\r\n"...)
	dst = appendHeaderLines(dst, e.ResponseHeaders)
	return enc.appendBody(dst, e.ResponseBody)
}

// appendBody appends b as raw bytes cut as CutBody cuts them; a base64
// body that does not decode is left out, as rawBody does.
func (enc Encoder) appendBody(dst []byte, b apimeter.Body) []byte {
	start := len(dst)
	if b.Base64 {
		var err error
		if dst, err = base64.StdEncoding.AppendDecode(dst, []byte(b.Text)); err != nil {
			return dst[:start]
		}
	} else {
		dst = append(dst, b.Text...)
	}
	return dst[:start+len(CutBody(dst[start:], enc.limit()))]
}
