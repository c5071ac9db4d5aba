package server_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/apimeter/apimeter/server"
)

// TestSecretsNeverStored posts an event and a profile carrying secrets in
// every place a careless client or an attacker puts them, and reads back
// what was stored: none may be there, and what is not secret must be.
func TestSecretsNeverStored(t *testing.T) {
	e := newEnv(t, server.Config{})
	b64 := base64.StdEncoding.EncodeToString([]byte("{\"raw\":\"\xfe\",\"refresh_token\":\"S-b64-body\"}"))
	event := `{
	  "event_id": "secrets-1",
	  "request": {"time": "2026-11-24T10:00:00.000Z", "verb": "POST",
	    "uri": "https://S-userinfo:S-userpass@api.acme.example/login;jsessionid=S-jsession?next=%2Fhome&password=S-query-pw#access_token=S-fragment",
	    "headers": {"Api-Key": "S-api-key", "X-Goog-Api-Key": "S-goog-key", "Private-Token": "S-private-token",
	      "X-Partner-Auth-Token": "S-custom-token", "Authorization": "fp_S-fake-fingerprint",
	      "Referer": "https://app.example/cb?code=S-oauth-code&state=keep-state", "Content-Type": "application/json", "Accept": "keep-accept"},
	    "body": {"username": "keep-user", "password": "S-body-pw", "card": {"card_number": "S-card", "cvv": 737123}}},
	  "response": {"time": "2026-11-24T10:00:00.050Z", "status": 302,
	    "headers": {"Location": "https://app.example/cb#id_token=S-location-frag&state=keep-state2"},
	    "body": "` + b64 + `", "transfer_encoding": "base64"},
	  "metadata": {"plan": "keep-plan", "client_secret": "S-meta-secret", "deep": {"apiKey": "S-meta-key"}}
	}`
	if code, out := e.post("/v1/events", []byte(event)); code != http.StatusOK {
		t.Fatalf("POST event: %d %v", code, out)
	}
	form := `{"user_id": "u-1", "session_token": "Bearer S-session", "metadata": {"email": "keep@example.com", "password": "S-profile-pw", "stripe": {"secret_key": "S-profile-secret"}}}`
	if code, out := e.post("/v1/users", []byte(form)); code != http.StatusOK {
		t.Fatalf("POST user: %d %v", code, out)
	}
	var stored strings.Builder
	for _, path := range []string{"/v1/o/acme/environments/prod/events", "/v1/o/acme/environments/prod/users/u-1"} {
		resp, err := e.read(path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		stored.Write(b)
		// Base64 bodies are read decoded too.
		var doc struct {
			Events []struct {
				Response struct {
					Body string `json:"body"`
				} `json:"response"`
			} `json:"events"`
		}
		if json.Unmarshal(b, &doc) == nil {
			for _, ev := range doc.Events {
				raw, _ := base64.StdEncoding.DecodeString(ev.Response.Body)
				stored.Write(raw)
			}
		}
	}
	all := stored.String()
	for _, secret := range []string{"S-userinfo", "S-userpass", "S-jsession", "S-query-pw", "S-fragment", "S-api-key", "S-goog-key",
		"S-private-token", "S-custom-token", "S-fake-fingerprint", "S-oauth-code", "S-body-pw", "S-card", "737123", "S-location-frag",
		"S-b64-body", "S-meta-secret", "S-meta-key", "S-session", "S-profile-pw", "S-profile-secret"} {
		if strings.Contains(all, secret) {
			t.Errorf("%s reached the store", secret)
		}
	}
	for _, keep := range []string{"keep-user", "keep-accept", "keep-state", "keep-state2", "keep-plan", "keep@example.com", "next=%2Fhome"} {
		if !strings.Contains(all, keep) {
			t.Errorf("%s, not a secret, was lost", keep)
		}
	}
	if t.Failed() {
		t.Logf("stored:\n%s", all)
	}
}
