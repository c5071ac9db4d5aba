package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTOptions configure how JWTs identify callers.
type JWTOptions struct {
	// UserClaim names the claim holding the user id. Empty means "sub".
	UserClaim string
	// HMACSecrets verify HS256/384/512 tokens.
	HMACSecrets [][]byte
	// PublicKeys verify RS*, PS*, ES* and EdDSA tokens.
	PublicKeys []crypto.PublicKey
	// JWKS verifies tokens by their kid (and, without a kid, by trying
	// each key of the right type).
	JWKS *JWKS
	// Leeway is allowed on exp and nbf, checked against the call's time.
	// Zero means one minute.
	Leeway time.Duration
	// CacheSize bounds the parsed tokens kept in memory. Zero means 10000;
	// negative disables the cache.
	CacheSize int
}

// JWT reads claims from bearer tokens. With no keys configured it trusts
// tokens as they are (decode only); with any key it verifies them, and a
// token it cannot verify (bad signature, unknown key, disallowed algorithm,
// expired or not yet valid at the time of the call) identifies no one.
type JWT struct {
	opts   JWTOptions
	verify bool
	parser *jwt.Parser

	mu    sync.Mutex
	cache map[string]*parsedToken
}

type parsedToken struct {
	claims   jwt.MapClaims
	ok       bool // parsed and, in verify mode, verified
	exp, nbf time.Time
}

// NewJWT returns a JWT reader for opts.
func NewJWT(opts JWTOptions) *JWT {
	if opts.UserClaim == "" {
		opts.UserClaim = "sub"
	}
	if opts.Leeway == 0 {
		opts.Leeway = time.Minute
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 10000
	}
	j := &JWT{opts: opts, cache: map[string]*parsedToken{}}
	j.verify = len(opts.HMACSecrets) > 0 || len(opts.PublicKeys) > 0 || (opts.JWKS != nil && len(opts.JWKS.Keys) > 0)
	var methods []string
	if len(opts.HMACSecrets) > 0 {
		methods = append(methods, "HS256", "HS384", "HS512")
	}
	if len(opts.PublicKeys) > 0 || opts.JWKS != nil {
		methods = append(methods, "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
	}
	if opts.JWKS != nil {
		for _, k := range opts.JWKS.Keys {
			if _, ok := k.Key.([]byte); ok {
				methods = append(methods, "HS256", "HS384", "HS512")
				break
			}
		}
	}
	popts := []jwt.ParserOption{jwt.WithJSONNumber(), jwt.WithoutClaimsValidation()}
	if j.verify {
		popts = append(popts, jwt.WithValidMethods(methods))
	}
	j.parser = jwt.NewParser(popts...)
	return j
}

// Verifies reports whether tokens are verified (some key is configured).
func (j *JWT) Verifies() bool { return j.verify }

// UserClaim is the claim the user id is read from.
func (j *JWT) UserClaim() string { return j.opts.UserClaim }

// looksLikeJWT is a cheap check before parsing: three dot-separated parts,
// the first a base64url JSON object.
func looksLikeJWT(tok string) bool {
	return strings.Count(tok, ".") == 2 && strings.HasPrefix(tok, "eyJ")
}

// Claims returns the claims of tok if it identifies someone for a call made
// at t, or nil.
func (j *JWT) Claims(tok string, t time.Time) jwt.MapClaims {
	if !looksLikeJWT(tok) {
		return nil
	}
	p := j.parse(tok)
	if !p.ok {
		return nil
	}
	if j.verify {
		if !p.exp.IsZero() && !t.Before(p.exp.Add(j.opts.Leeway)) {
			return nil
		}
		if !p.nbf.IsZero() && t.Before(p.nbf.Add(-j.opts.Leeway)) {
			return nil
		}
	}
	return p.claims
}

func (j *JWT) parse(tok string) *parsedToken {
	if j.opts.CacheSize > 0 {
		j.mu.Lock()
		p, ok := j.cache[tok]
		j.mu.Unlock()
		if ok {
			return p
		}
	}
	p := &parsedToken{claims: jwt.MapClaims{}}
	var err error
	if j.verify {
		_, err = j.parser.ParseWithClaims(tok, p.claims, j.keyfunc)
	} else {
		_, _, err = j.parser.ParseUnverified(tok, p.claims)
	}
	p.ok = err == nil
	if p.ok {
		p.exp = numericTime(p.claims["exp"])
		p.nbf = numericTime(p.claims["nbf"])
	}
	if j.opts.CacheSize > 0 {
		j.mu.Lock()
		if len(j.cache) >= j.opts.CacheSize {
			// Dropping everything is crude but bounded and cheap; tokens in
			// use come back on the next call.
			clear(j.cache)
		}
		j.cache[tok] = p
		j.mu.Unlock()
	}
	return p
}

func numericTime(v any) time.Time {
	switch v := v.(type) {
	case json.Number:
		if f, err := v.Float64(); err == nil {
			sec := int64(f)
			return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC()
		}
	case float64:
		return time.Unix(int64(v), 0).UTC()
	}
	return time.Time{}
}

var errNoKey = errors.New("no key for this token")

func (j *JWT) keyfunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	want := func(k any) bool {
		switch t.Method.(type) {
		case *jwt.SigningMethodHMAC:
			_, ok := k.([]byte)
			return ok
		case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
			_, ok := k.(*rsa.PublicKey)
			return ok
		case *jwt.SigningMethodECDSA:
			_, ok := k.(*ecdsa.PublicKey)
			return ok
		case *jwt.SigningMethodEd25519:
			_, ok := k.(ed25519.PublicKey)
			return ok
		}
		return false
	}
	var set jwt.VerificationKeySet
	if j.opts.JWKS != nil {
		for _, k := range j.opts.JWKS.Keys {
			if (kid == "" || k.ID == kid) && want(k.Key) {
				set.Keys = append(set.Keys, k.Key)
			}
		}
		if kid != "" && len(set.Keys) > 0 {
			return set, nil
		}
	}
	for _, s := range j.opts.HMACSecrets {
		if want(s) {
			set.Keys = append(set.Keys, s)
		}
	}
	for _, k := range j.opts.PublicKeys {
		if want(k) {
			set.Keys = append(set.Keys, k)
		}
	}
	if len(set.Keys) == 0 {
		return nil, errNoKey
	}
	return set, nil
}

// ClaimString returns a claim as a string: strings as they are, numbers in
// their JSON form, anything else "".
func ClaimString(c jwt.MapClaims, name string) string {
	switch v := c[name].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// JWKS is a JSON Web Key Set: the public keys (and, for kty "oct",
// secrets) tokens may be signed with.
type JWKS struct {
	Keys []JWK
}

// JWK is one key of a JWKS.
type JWK struct {
	ID  string
	Key any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte
}

// ParseJWKS reads a JWKS document ({"keys": [...]}, RFC 7517). Keys of
// unknown types or uses other than "sig" are skipped; a malformed key of a
// known type is an error.
func ParseJWKS(b []byte) (*JWKS, error) {
	var doc struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Crv string `json:"crv"`
			N   string `json:"n"`
			E   string `json:"e"`
			X   string `json:"x"`
			Y   string `json:"y"`
			K   string `json:"k"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	out := &JWKS{}
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key any
		var err error
		switch k.Kty {
		case "RSA":
			key, err = rsaKey(k.N, k.E)
		case "EC":
			key, err = ecKey(k.Crv, k.X, k.Y)
		case "OKP":
			if k.Crv != "Ed25519" {
				continue
			}
			var x []byte
			if x, err = b64(k.X); err == nil && len(x) != ed25519.PublicKeySize {
				err = errors.New("x is not an Ed25519 public key")
			}
			key = ed25519.PublicKey(x)
		case "oct":
			var s []byte
			if s, err = b64(k.K); err == nil && len(s) == 0 {
				err = errors.New("k is empty")
			}
			key = s
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("jwks: key %d (%s %q): %w", i, k.Kty, k.Kid, err)
		}
		out.Keys = append(out.Keys, JWK{ID: k.Kid, Key: key})
	}
	return out, nil
}

func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func rsaKey(n, e string) (*rsa.PublicKey, error) {
	nb, err := b64(n)
	if err != nil || len(nb) == 0 {
		return nil, errors.New("n is not base64url")
	}
	eb, err := b64(e)
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("e is not a base64url exponent")
	}
	exp := 0
	for _, c := range eb {
		exp = exp<<8 | int(c)
	}
	if exp < 3 || exp%2 == 0 {
		return nil, errors.New("e is not a valid RSA exponent")
	}
	if len(nb) < 128 {
		return nil, errors.New("n is shorter than 1024 bits")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: exp}, nil
}

func ecKey(crv, x, y string) (*ecdsa.PublicKey, error) {
	var c elliptic.Curve
	switch crv {
	case "P-256":
		c = elliptic.P256()
	case "P-384":
		c = elliptic.P384()
	case "P-521":
		c = elliptic.P521()
	default:
		return nil, fmt.Errorf("unsupported curve %q", crv)
	}
	xb, err1 := b64(x)
	yb, err2 := b64(y)
	size := (c.Params().BitSize + 7) / 8
	if err1 != nil || err2 != nil || len(xb) != size || len(yb) != size {
		return nil, errors.New("x and y must be base64url coordinates of the curve's size")
	}
	return ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, xb...), yb...))
}

// ParsePublicKeyPEM reads an RSA, EC or Ed25519 public key from PEM.
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(b); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(b); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PEM RSA, EC or Ed25519 public key")
}
