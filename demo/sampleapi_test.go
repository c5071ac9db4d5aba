package demo

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestSampleAPIRequiresAValidJWT(t *testing.T) {
	secret := []byte("test secret")
	srv := httptest.NewServer((&SampleAPI{Secret: secret, Slow: 0.01}).Handler())
	defer srv.Close()
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "513", "exp": time.Now().Add(-time.Hour).Unix()}).SignedString(secret)
	noSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	u := User{ID: "513", Company: "abcdef"}
	for _, tc := range []struct {
		name, auth string
		ok         bool
	}{
		{"valid", "Bearer " + Token(secret, u), true},
		{"missing", "", false},
		{"not bearer", "Basic " + Token(secret, u), false},
		{"forged", "Bearer " + Token([]byte("other"), u), false},
		{"expired", "Bearer " + expired, false},
		{"no sub", "Bearer " + noSub, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/accounts/abcdef/message", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.StatusCode == http.StatusUnauthorized; got == tc.ok {
				t.Errorf("status %d; want 401: %v", resp.StatusCode, !tc.ok)
			}
		})
	}
}

func TestAPIOf(t *testing.T) {
	for path, want := range map[string]string{"/accounts/abcdef/message": "accounts", "/orders": "orders", "/search": "search", "/": ""} {
		if got := APIOf(path); got != want {
			t.Errorf("APIOf(%q) = %q, want %q", path, got, want)
		}
	}
}
