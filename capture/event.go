package capture

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/scrub"
)

// fillEvent overwrites *e with the scrubbed Event of a record. Unless
// borrow is set, it copies everything it keeps, so the record can be reused
// as soon as it returns; with borrow, headers and bodies point into the
// record, which must not be reused before the event is dropped. It fills a
// slot of the sender's batch in place: an Event returned by value escaped
// to the heap (the scrubber and Mask take its address), 500 bytes of
// garbage per call.
func (c *Capture) fillEvent(e *apimeter.Event, rec *record, borrow bool) {
	scheme := "http"
	if rec.tls {
		scheme = "https"
	}
	*e = apimeter.Event{
		ID:              rec.id,
		Direction:       apimeter.Incoming,
		APIName:         c.opts.APIName,
		RequestTime:     rec.start.UTC(),
		ResponseTime:    rec.end.UTC(),
		Method:          rec.method,
		Path:            rec.path,
		Route:           rec.route,
		Query:           rec.query,
		ClientIP:        hostOnly(rec.remoteAddr),
		RequestHeaders:  rec.reqHeaders,
		RequestSize:     rec.reqLen,
		Status:          rec.status,
		ResponseHeaders: rec.respHeaders,
		ResponseSize:    rec.respSize,
		LatencyMs:       float64(rec.end.Sub(rec.start).Microseconds()) / 1000,
		UserID:          rec.user,
		CompanyID:       rec.company,
		SessionToken:    rec.session,
		Weight:          c.weight,
		TargetURL:       rec.target.URL,
		TargetLatencyMs: targetMs(rec.target.Latency),
	}
	// With borrow, the URI and the added Content-Length point into the
	// record's scratch buffer rather than into new strings.
	rec.scratch = append(append(append(rec.scratch[:0], scheme...), "://"...), rec.host...)
	rec.scratch = append(rec.scratch, rec.requestURI...)
	uriLen := len(rec.scratch)
	if !borrow {
		e.URI = string(rec.scratch)
		e.RequestHeaders = append(apimeter.Headers(nil), e.RequestHeaders...)
		e.ResponseHeaders = append(apimeter.Headers(nil), e.ResponseHeaders...)
	}
	if e.APIName == "" {
		e.APIName = hostOnly(rec.host)
	}
	e.UserAgent = e.RequestHeaders.Get("User-Agent")
	if e.RequestSize < 0 && rec.reqRead > 0 {
		e.RequestSize = rec.reqRead
	}
	// The collector schema carries sizes only as Content-Length; add it when
	// the handler did not, so that a capped body does not understate them.
	if e.ResponseHeaders.Get("Content-Length") == "" && !rec.hijacked {
		var n string
		if borrow {
			rec.scratch = strconv.AppendInt(rec.scratch, rec.respSize, 10)
			n = unsafe.String(&rec.scratch[uriLen], len(rec.scratch)-uriLen)
		} else {
			n = strconv.FormatInt(rec.respSize, 10)
		}
		e.ResponseHeaders = append(e.ResponseHeaders, apimeter.Header{Name: "Content-Length", Value: n})
		if borrow {
			// Keep the grown slice: appending to the record's full one
			// allocated a new array for every event.
			rec.respHeaders = e.ResponseHeaders
		}
	}
	if borrow {
		// After the last append: the buffer no longer moves.
		e.URI = unsafe.String(&rec.scratch[0], uriLen)
	}
	if c.opts.LogBody {
		e.RequestBody = body(rec.reqBody, rec.reqRead > int64(len(rec.reqBody)), borrow)
		e.ResponseBody = body(rec.respBody, rec.respSize > int64(len(rec.respBody)), borrow)
	}
	if e.UserID == "" && rec.auth != "" {
		e.UserID = c.subject(rec.auth)
	}
	if rec.metadata != nil {
		if b, err := json.Marshal(rec.metadata); err == nil {
			e.Metadata = b
		} else {
			c.log.Warn("capture: metadata is not JSON", "err", err)
		}
	}
	c.scrub.Scrub(e)
	if c.opts.Mask != nil {
		c.callMask(e)
		c.scrub.Scrubber().Scrub(e)
	}
}

// targetMs is an upstream latency in milliseconds, microsecond precision,
// as LatencyMs is.
func targetMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// maxSubjects bounds the sender's cache of token -> subject.
const maxSubjects = 4096

// subject returns the JWT subject of an Authorization value. Clients send
// the same token for many calls, so answers are cached; only the sending
// goroutine calls it.
func (c *Capture) subject(auth string) string {
	if sub, ok := c.subjects[auth]; ok {
		return sub
	}
	if len(c.subjects) >= maxSubjects {
		clear(c.subjects)
	}
	sub := c.jwt.subject(auth)
	c.subjects[auth] = sub
	return sub
}

// body turns captured bytes into a Body: text when valid UTF-8 (a cut
// multi-byte character at the end is dropped), base64 otherwise. With
// borrow, the text points into b.
func body(b []byte, truncated, borrow bool) apimeter.Body {
	if len(b) == 0 {
		return apimeter.Body{}
	}
	text := b
	if truncated {
		text = trimCutRune(text)
	}
	if utf8.Valid(text) {
		if borrow && len(text) > 0 {
			return apimeter.Body{Text: unsafe.String(&text[0], len(text)), Truncated: truncated}
		}
		return apimeter.Body{Text: string(text), Truncated: truncated}
	}
	return apimeter.Body{Text: base64.StdEncoding.EncodeToString(b), Base64: true, Truncated: truncated}
}

// trimCutRune drops the bytes of a multi-byte character that the body cap
// cut off at the end of b.
func trimCutRune(b []byte) []byte {
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		r, size := utf8.DecodeLastRune(b)
		if r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return b
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// newID returns a random version-4 UUID, the form of Moesif's transaction
// ids.
func newID() string {
	var b [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i], b[8+i] = byte(hi>>(8*i)), byte(lo>>(8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hexd = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexd[x>>4], hexd[x&0x0f]
		j += 2
	}
	return string(s[:])
}

// jwtDecoder reads the subject of a Bearer JWT, verifying it when it has a
// key.
type jwtDecoder struct {
	key    any
	parser *jwt.Parser
}

func newJWTDecoder(key any, methods []string) (jwtDecoder, error) {
	if key == nil {
		return jwtDecoder{parser: jwt.NewParser()}, nil
	}
	if len(methods) == 0 {
		switch key.(type) {
		case []byte:
			methods = []string{"HS256", "HS384", "HS512"}
		case *rsa.PublicKey:
			methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
		case *ecdsa.PublicKey:
			methods = []string{"ES256", "ES384", "ES512"}
		case ed25519.PublicKey:
			methods = []string{"EdDSA"}
		default:
			return jwtDecoder{}, fmt.Errorf("JWTKey of type %T needs JWTMethods", key)
		}
	}
	return jwtDecoder{key: key, parser: jwt.NewParser(jwt.WithValidMethods(methods))}, nil
}

// subject returns the "sub" claim of the Bearer JWT in an Authorization
// value, or "" when there is none or it does not verify.
func (d jwtDecoder) subject(auth string) string {
	auth = strings.TrimSpace(auth)
	if len(auth) < 7 || !strings.EqualFold(auth[:7], "bearer ") {
		return ""
	}
	tok := scrub.BearerToken(auth)
	if strings.Count(tok, ".") != 2 {
		return ""
	}
	claims := jwt.MapClaims{}
	var err error
	if d.key == nil {
		_, _, err = d.parser.ParseUnverified(tok, claims)
	} else {
		_, err = d.parser.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return d.key, nil })
	}
	if err != nil {
		return ""
	}
	sub, err := claims.GetSubject()
	if err != nil {
		return ""
	}
	return sub
}
