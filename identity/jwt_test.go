package identity_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter/identity"
)

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTClaims(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	rsaPub, err := identity.ParsePublicKeyPEM(rsaPEM)
	if err != nil {
		t.Fatal(err)
	}
	ecRaw, _ := ecKey.PublicKey.Bytes()
	jwksDoc, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64u(ecRaw[1:33]), "y": b64u(ecRaw[33:])},
		{"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b64u(edPub)},
		{"kty": "RSA", "kid": "enc-only", "use": "enc", "n": b64u(rsaKey.N.Bytes()), "e": b64u(big.NewInt(int64(rsaKey.E)).Bytes())},
	}})
	jwks, err := identity.ParseJWKS(jwksDoc)
	if err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 2 {
		t.Fatalf("JWKS: %d keys, want 2 (the enc key skipped)", len(jwks.Keys))
	}
	secret := []byte("s3cret-s3cret-s3cret-s3cret-s3cret")
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	verify := identity.NewJWT(identity.JWTOptions{HMACSecrets: [][]byte{secret}, PublicKeys: []crypto.PublicKey{rsaPub}, JWKS: jwks})
	decode := identity.NewJWT(identity.JWTOptions{UserClaim: "uid"})
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u"}).SignedString(jwt.UnsafeAllowNoneSignatureType)

	cases := []struct {
		name string
		j    *identity.JWT
		tok  string
		want string // user claim, "" for no one
	}{
		{"HS256 good", verify, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "513"}), "513"},
		{"HS256 wrong secret", verify, sign(t, jwt.SigningMethodHS256, []byte("other-secret-other-secret"), "", jwt.MapClaims{"sub": "513"}), ""},
		{"RS256 by PEM key", verify, sign(t, jwt.SigningMethodRS256, rsaKey, "", jwt.MapClaims{"sub": "r1"}), "r1"},
		{"ES256 by JWKS kid", verify, sign(t, jwt.SigningMethodES256, ecKey, "ec-1", jwt.MapClaims{"sub": "e1"}), "e1"},
		{"ES256 by JWKS without kid", verify, sign(t, jwt.SigningMethodES256, ecKey, "", jwt.MapClaims{"sub": "e2"}), "e2"},
		{"ES256 unknown signer", verify, sign(t, jwt.SigningMethodES256, otherEC, "ec-1", jwt.MapClaims{"sub": "e3"}), ""},
		{"EdDSA by JWKS", verify, sign(t, jwt.SigningMethodEdDSA, edPriv, "ed-1", jwt.MapClaims{"sub": "d1"}), "d1"},
		{"alg none refused", verify, none, ""},
		{"expired at call time", verify, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "x", "exp": at.Add(-time.Hour).Unix()}), ""},
		{"valid at call time though expired now", verify, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "x", "exp": at.Add(time.Hour).Unix()}), "x"},
		{"not yet valid", verify, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "x", "nbf": at.Add(time.Hour).Unix()}), ""},
		{"numeric user claim", verify, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": 1234}), "1234"},
		{"decode mode trusts any signature", decode, sign(t, jwt.SigningMethodHS256, []byte("whatever-whatever-whatever"), "", jwt.MapClaims{"uid": "u9"}), "u9"},
		{"decode mode ignores exp", decode, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"uid": "u8", "exp": 1}), "u8"},
		{"not a JWT", verify, "ak_live_123", ""},
		{"garbage with dots", decode, "eyJ.x.y", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for round := 0; round < 2; round++ { // the second answer comes from the cache
				got := identity.ClaimString(c.j.Claims(c.tok, at), c.j.UserClaim())
				if got != c.want {
					t.Fatalf("round %d: user %q, want %q", round, got, c.want)
				}
			}
		})
	}
}

func TestParseJWKSErrors(t *testing.T) {
	cases := []struct{ name, doc string }{
		{"not JSON", `{`},
		{"bad RSA modulus", `{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}`},
		{"short RSA modulus", `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`},
		{"EC point off the curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`},
		{"unknown curve", `{"keys":[{"kty":"EC","crv":"P-192","x":"AA","y":"AA"}]}`},
		{"short Ed25519 key", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`},
		{"empty oct", `{"keys":[{"kty":"oct","k":""}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := identity.ParseJWKS([]byte(c.doc)); err == nil {
				t.Fatalf("ParseJWKS(%s) succeeded, want an error", c.doc)
			}
		})
	}
}
