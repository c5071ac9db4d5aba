package otlp

import (
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/apimeter/apimeter"
)

// maxHeaders bounds the header attributes kept per call, as the collector
// bounds the headers of an event.
const maxHeaders = 1000

// httpCall is what the HTTP semantic conventions say about one call, read
// from the attributes of a span or a log record. Where the current and the
// older conventions both name a value, the current one wins whatever the
// order of the attributes; among several older names the rank says which
// wins (lower first).
type httpCall struct {
	method, methodOriginal  string
	path, query             string
	target                  string // http.target: path and query
	full                    string // url.full / http.url
	scheme, host            string
	port                    int64
	route                   string
	status                  int64
	clientIP                string
	userAgent               string
	userID                  string
	reqSize, respSize       int64
	durationSec             float64 // logs: http.server.request.duration
	reqHeaders, respHeaders apimeter.Headers
	tooManyHeaders          bool

	// ranks of the values several names can set; 0 is unset.
	methodRank, pathRank, queryRank, fullRank, schemeRank, hostRank, portRank,
	statusRank, clientRank, uaRank, userRank, reqSizeRank, respSizeRank, durRank uint8
}

func (c *httpCall) reset() {
	*c = httpCall{reqHeaders: c.reqHeaders[:0], respHeaders: c.respHeaders[:0], reqSize: -1, respSize: -1}
}

// setStr sets *dst to v when rank beats the rank *r holds.
func setStr(dst *string, r *uint8, v string, rank uint8) {
	if v == "" || (*r != 0 && *r <= rank) {
		return
	}
	*dst, *r = v, rank
}

func setInt(dst *int64, r *uint8, v int64, ok bool, rank uint8) {
	if !ok || (*r != 0 && *r <= rank) {
		return
	}
	*dst, *r = v, rank
}

// str is an attribute value as text: strings as they are, numbers and
// booleans written out, anything else empty.
func str(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'f', -1, 64)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	}
	return ""
}

// integer is an attribute value as a whole number: an int, a whole double
// or a decimal string (older instrumentations send status codes as text).
func integer(v *commonpb.AnyValue) (int64, bool) {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_IntValue:
		return x.IntValue, true
	case *commonpb.AnyValue_DoubleValue:
		if f := x.DoubleValue; f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), true
		}
	case *commonpb.AnyValue_StringValue:
		n, err := strconv.ParseInt(strings.TrimSpace(x.StringValue), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func number(v *commonpb.AnyValue) (float64, bool) {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_IntValue:
		return float64(x.IntValue), true
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue, !math.IsNaN(x.DoubleValue) && !math.IsInf(x.DoubleValue, 0)
	case *commonpb.AnyValue_StringValue:
		f, err := strconv.ParseFloat(strings.TrimSpace(x.StringValue), 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	return 0, false
}

const (
	reqHeaderPrefix  = "http.request.header."
	respHeaderPrefix = "http.response.header."
)

// add reads one attribute. Unknown keys are ignored: only the HTTP
// conventions, the user and the captured headers become part of a call.
func (c *httpCall) add(kv *commonpb.KeyValue) {
	k, v := kv.GetKey(), kv.GetValue()
	switch k {
	case "http.request.method":
		setStr(&c.method, &c.methodRank, str(v), 1)
	case "http.method":
		setStr(&c.method, &c.methodRank, str(v), 2)
	case "http.request.method_original":
		c.methodOriginal = str(v)
	case "url.path":
		setStr(&c.path, &c.pathRank, str(v), 1)
	case "url.query":
		setStr(&c.query, &c.queryRank, str(v), 1)
	case "http.target":
		c.target = str(v)
	case "url.full":
		setStr(&c.full, &c.fullRank, str(v), 1)
	case "http.url":
		setStr(&c.full, &c.fullRank, str(v), 2)
	case "url.scheme":
		setStr(&c.scheme, &c.schemeRank, str(v), 1)
	case "http.scheme":
		setStr(&c.scheme, &c.schemeRank, str(v), 2)
	case "server.address":
		setStr(&c.host, &c.hostRank, str(v), 1)
	case "http.host":
		setStr(&c.host, &c.hostRank, str(v), 2)
	case "net.host.name":
		setStr(&c.host, &c.hostRank, str(v), 3)
	case "server.port":
		n, ok := integer(v)
		setInt(&c.port, &c.portRank, n, ok, 1)
	case "net.host.port":
		n, ok := integer(v)
		setInt(&c.port, &c.portRank, n, ok, 2)
	case "http.route":
		c.route = str(v)
	case "http.response.status_code":
		n, ok := integer(v)
		setInt(&c.status, &c.statusRank, n, ok, 1)
	case "http.status_code":
		n, ok := integer(v)
		setInt(&c.status, &c.statusRank, n, ok, 2)
	case "client.address":
		setStr(&c.clientIP, &c.clientRank, str(v), 1)
	case "http.client_ip":
		setStr(&c.clientIP, &c.clientRank, str(v), 2)
	case "net.sock.peer.addr":
		setStr(&c.clientIP, &c.clientRank, str(v), 3)
	case "net.peer.ip":
		setStr(&c.clientIP, &c.clientRank, str(v), 4)
	case "network.peer.address":
		// The peer of the connection: a proxy when there is one, so only
		// when nothing names the client.
		setStr(&c.clientIP, &c.clientRank, str(v), 5)
	case "user_agent.original":
		setStr(&c.userAgent, &c.uaRank, str(v), 1)
	case "http.user_agent":
		setStr(&c.userAgent, &c.uaRank, str(v), 2)
	case "user.id":
		setStr(&c.userID, &c.userRank, str(v), 1)
	case "enduser.id":
		setStr(&c.userID, &c.userRank, str(v), 2)
	case "http.request.body.size":
		n, ok := integer(v)
		setInt(&c.reqSize, &c.reqSizeRank, n, ok && n >= 0, 1)
	case "http.request_content_length":
		n, ok := integer(v)
		setInt(&c.reqSize, &c.reqSizeRank, n, ok && n >= 0, 2)
	case "http.request_content_length_uncompressed":
		n, ok := integer(v)
		setInt(&c.reqSize, &c.reqSizeRank, n, ok && n >= 0, 3)
	case "http.response.body.size":
		n, ok := integer(v)
		setInt(&c.respSize, &c.respSizeRank, n, ok && n >= 0, 1)
	case "http.response_content_length":
		n, ok := integer(v)
		setInt(&c.respSize, &c.respSizeRank, n, ok && n >= 0, 2)
	case "http.response_content_length_uncompressed":
		n, ok := integer(v)
		setInt(&c.respSize, &c.respSizeRank, n, ok && n >= 0, 3)
	case "http.server.request.duration":
		if f, ok := number(v); ok && f >= 0 && c.durRank == 0 {
			c.durationSec, c.durRank = f, 1
		}
	default:
		if name, ok := strings.CutPrefix(k, reqHeaderPrefix); ok && name != "" {
			c.reqHeaders = c.header(c.reqHeaders, name, v)
		} else if name, ok := strings.CutPrefix(k, respHeaderPrefix); ok && name != "" {
			c.respHeaders = c.header(c.respHeaders, name, v)
		}
	}
}

// header adds a captured header: the conventions give its values as an
// array of strings; a single string is taken too.
func (c *httpCall) header(h apimeter.Headers, name string, v *commonpb.AnyValue) apimeter.Headers {
	if arr := v.GetArrayValue(); arr != nil {
		for _, x := range arr.GetValues() {
			if len(h) >= maxHeaders {
				c.tooManyHeaders = true
				return h
			}
			h = append(h, apimeter.Header{Name: name, Value: str(x)})
		}
		return h
	}
	if len(h) >= maxHeaders {
		c.tooManyHeaders = true
		return h
	}
	return append(h, apimeter.Header{Name: name, Value: str(v)})
}

// isHTTP reports whether the attributes describe an HTTP call at all.
func (c *httpCall) isHTTP() bool { return c.method != "" }

// fill sets the request side of e from c: method, URI, path, query, route,
// client, sizes, user, headers. It returns what is missing, or "".
func (c *httpCall) fill(e *apimeter.Event) string {
	method := strings.ToUpper(c.method)
	if method == "_OTHER" {
		method = strings.ToUpper(c.methodOriginal)
		if method == "" {
			method = "_OTHER"
		}
	}
	e.Method = method
	path, query := c.path, c.query
	if path == "" && c.target != "" {
		path, query = splitTarget(c.target)
	}
	scheme, host, port := c.scheme, c.host, c.port
	if c.full != "" {
		if u, err := url.Parse(c.full); err == nil {
			if path == "" {
				path, query = u.EscapedPath(), u.RawQuery
				if path == "" {
					path = "/"
				}
			}
			if scheme == "" {
				scheme = u.Scheme
			}
			if host == "" {
				host = u.Hostname()
				if p, err := strconv.ParseInt(u.Port(), 10, 64); err == nil {
					port = p
				}
			}
		}
	}
	if path == "" {
		return "no path: the call carries none of url.path, http.target, url.full or http.url"
	}
	e.Path, e.Query = path, query
	switch {
	case c.full != "":
		e.URI = c.full
	case host != "" && scheme != "":
		var b strings.Builder
		b.WriteString(scheme)
		b.WriteString("://")
		if port > 0 && !defaultPort(scheme, port) {
			b.WriteString(net.JoinHostPort(host, strconv.FormatInt(port, 10)))
		} else if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
			b.WriteString("[" + host + "]") // http.host may also be "name:port", kept as it is
		} else {
			b.WriteString(host)
		}
		b.WriteString(path)
		if query != "" {
			b.WriteByte('?')
			b.WriteString(query)
		}
		e.URI = b.String()
	default:
		e.URI = path
		if query != "" {
			e.URI = path + "?" + query
		}
	}
	e.Route = c.route
	e.ClientIP = clientIP(c.clientIP)
	e.UserAgent = c.userAgent
	e.RequestSize, e.ResponseSize = c.reqSize, c.respSize
	e.UserID = c.userID
	if len(c.reqHeaders) > 0 {
		e.RequestHeaders = append(apimeter.Headers(nil), c.reqHeaders...)
		if e.UserAgent == "" {
			e.UserAgent = e.RequestHeaders.Get("User-Agent")
		}
	}
	if len(c.respHeaders) > 0 {
		e.ResponseHeaders = append(apimeter.Headers(nil), c.respHeaders...)
	}
	if c.statusRank != 0 {
		if c.status < 0 || c.status > 999 {
			return "http.response.status_code " + strconv.FormatInt(c.status, 10) + " is no HTTP status"
		}
		e.Status = int(c.status)
	}
	return ""
}

func defaultPort(scheme string, port int64) bool {
	return (scheme == "http" && port == 80) || (scheme == "https" && port == 443)
}

// splitTarget splits http.target (path and query as sent) in two.
func splitTarget(t string) (path, query string) {
	if i := strings.IndexByte(t, '#'); i >= 0 {
		t = t[:i]
	}
	if i := strings.IndexByte(t, '?'); i >= 0 {
		return t[:i], t[i+1:]
	}
	return t, ""
}

// clientIP keeps an address without its port (net.sock.peer.addr style
// values sometimes carry one).
func clientIP(ip string) string {
	ip = strings.TrimSpace(ip)
	if strings.IndexByte(ip, ':') < 0 {
		return ip // no port (and no error value made to say so)
	}
	if host, _, err := net.SplitHostPort(ip); err == nil {
		if _, err := netip.ParseAddr(host); err == nil {
			return host
		}
	}
	return ip
}

// routeFromName is the route template of a server span named, as the
// conventions ask, "{method} {http.route}", when no http.route attribute
// was set (otelhttp renames its span from the ServeMux pattern after the
// handler ran, but sets no attribute then). A name that is the path itself
// is not taken: some instrumentations name spans after the raw path, and a
// route per distinct path would be no route at all.
func routeFromName(name, method, path string) string {
	rest, ok := strings.CutPrefix(name, method+" ")
	if !ok || !strings.HasPrefix(rest, "/") || strings.ContainsAny(rest, " ?") || rest == path {
		return ""
	}
	return rest
}
