package scrub

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/apimeter/apimeter"
)

// eventText is everything of e that reaches the store, base64 bodies
// decoded, for looking for secrets in.
func eventText(e *apimeter.Event) string {
	all := strings.Join([]string{e.ID, e.URI, e.Path, e.Query, e.TargetURL, e.UserID, e.CompanyID, e.APIKeyID, e.SessionToken,
		e.Tags, e.UserAgent, e.RequestBody.Text, e.ResponseBody.Text, string(e.Metadata)}, "\n")
	for _, h := range append(append(apimeter.Headers(nil), e.RequestHeaders...), e.ResponseHeaders...) {
		all += "\n" + h.Name + ": " + h.Value
	}
	for _, body := range []apimeter.Body{e.RequestBody, e.ResponseBody} {
		if body.Base64 {
			raw, _ := base64.StdEncoding.DecodeString(body.Text)
			all += string(raw)
		}
	}
	return all
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

// TestScrubSecretsEverywhere sends each secret where a careless client or
// an attacker puts one, and checks that none reaches what is stored, while
// what is not secret stays readable.
func TestScrubSecretsEverywhere(t *testing.T) {
	hdr := func(kv ...string) apimeter.Headers {
		var h apimeter.Headers
		for i := 0; i < len(kv); i += 2 {
			h = append(h, apimeter.Header{Name: kv[i], Value: kv[i+1]})
		}
		return h
	}
	b64 := func(s string) apimeter.Body {
		return apimeter.Body{Text: base64.StdEncoding.EncodeToString([]byte(s)), Base64: true}
	}
	cases := []struct {
		name    string
		ev      apimeter.Event
		secrets []string // none may survive
		keep    []string // all must survive
	}{
		{"json request body", apimeter.Event{RequestBody: apimeter.Body{Text: `{"username":"ann","password":"hunter2","grant_type":"password"}`}},
			[]string{"hunter2"}, []string{`"username":"ann"`, `"grant_type":"password"`}},
		{"json names in other spellings, nested, in arrays", apimeter.Event{ResponseBody: apimeter.Body{Text: `{"data":[{"accessToken":"at-1","Refresh-Token":"rt-2","id_token":"it-3"}],"user":{"NewPassword":"np-4","Client_Secret":"cs-5"}}`}},
			[]string{"at-1", "rt-2", "it-3", "np-4", "cs-5"}, []string{`"data":[{`}},
		{"numbers and objects under secret names", apimeter.Event{RequestBody: apimeter.Body{Text: `{"card_number":4111111111111111,"cvv":737,"secret":{"k":"obj-6"},"api_key":["arr-7"],"remember":true}`}},
			[]string{"4111111111111111", "737", "obj-6", "arr-7"}, []string{`"remember":true`}},
		{"escaped names and values", apimeter.Event{RequestBody: apimeter.Body{Text: `{"pass\u0077ord":"esc\"8","token":"t\u00e99"}`}},
			[]string{`esc\"8`, `t\u00e99`}, nil},
		{"secret cut by the body cap", apimeter.Event{RequestBody: apimeter.Body{Text: `{"note":"` + strings.Repeat("x", 40) + `","password":"cutsecret-and-more"}`}},
			[]string{"cutsecret"}, []string{`"note":"xxx`}},
		{"form body", apimeter.Event{RequestHeaders: hdr("Content-Type", "application/x-www-form-urlencoded"),
			RequestBody: apimeter.Body{Text: "grant_type=password&username=ann&password=hunter%32&client_secret=cs9\r\n"}},
			[]string{"hunter%32", "hunter2", "cs9"}, []string{"grant_type=password&username=ann&password=fp_"}},
		{"base64 body of JSON with an invalid byte", apimeter.Event{RequestBody: b64("{\"bin\":\"\xff\",\"refresh_token\":\"b64-10\"}")},
			[]string{"b64-10"}, []string{`"bin":"` + "\xff"}},
		{"base64 form body", apimeter.Event{ResponseBody: b64("access_token=b64-11&token_type=bearer\x00")},
			[]string{"b64-11"}, []string{"token_type=bearer"}},
		{"metadata", apimeter.Event{Metadata: json.RawMessage(`{"plan":"pro","password":"md-12","nested":{"apiKey":"md-13"}}`)},
			[]string{"md-12", "md-13"}, []string{`"plan":"pro"`}},
		{"credential headers", apimeter.Event{RequestHeaders: hdr("Api-Key", "h-14", "X-Goog-Api-Key", "h-15", "Private-Token", "h-16",
			"X-Shopify-Access-Token", "h-17", "X-Client-Secret", "h-18", "DD-API-KEY", "h-19", "X-Extra-Cred", "h-20", "Accept", "*/*")},
			[]string{"h-14", "h-15", "h-16", "h-17", "h-18", "h-19", "h-20"}, []string{"*/*"}},
		{"URL-valued headers", apimeter.Event{RequestHeaders: hdr("Referer", "https://app.example/cb?code=c-21&state=s1"),
			ResponseHeaders: hdr("Location", "https://app.example/cb#access_token=f-22&token_type=Bearer&expires_in=3600",
				"Link", "<https://api.example/p?page=2&api_key=l-23>; rel=\"next\"", "X-Next", "https://u-24:p-25@h.example/x")},
			[]string{"c-21", "f-22", "l-23", "u-24", "p-25"}, []string{"state=s1", "expires_in=3600", "page=2", `>; rel="next"`, "@h.example/x"}},
		{"request URI: user info, fragment, jsessionid", apimeter.Event{URI: "https://ui-26:pw-27@api.example/a;jsessionid=js-28/b?x=1&token=q-29#id_token=fr-30",
			Path: "/a;jsessionid=js-28/b", Query: "x=1&token=q-29", TargetURL: "http://up.example/a?password=tu-31"},
			[]string{"ui-26", "pw-27", "js-28", "q-29", "fr-30", "tu-31"}, []string{"@api.example/a;jsessionid=fp_", "/b?x=1&token=fp_", "#id_token=fp_"}},
		{"values that merely start with fp_", apimeter.Event{RequestHeaders: hdr("Authorization", "fp_hunter2"), Query: "password=fp_pw-32",
			SessionToken: "fp_st-33", APIKeyID: "fp_ak-34"},
			[]string{"fp_hunter2", "fp_pw-32", "fp_st-33", "fp_ak-34"}, nil},
	}
	for _, keyed := range []bool{false, true} {
		cfg := Config{SecretHeaders: []string{"X-Extra-Cred"}, BodyCap: 64}
		if keyed {
			cfg.Key = testKey
		}
		s := NewWith(cfg)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := tc.ev
				e.RequestHeaders = append(apimeter.Headers(nil), tc.ev.RequestHeaders...)
				e.ResponseHeaders = append(apimeter.Headers(nil), tc.ev.ResponseHeaders...)
				if tc.name != "secret cut by the body cap" {
					s.BodyCap = 1024
				} else {
					s.BodyCap = 64
				}
				s.Scrub(&e)
				all := eventText(&e)
				for _, secret := range tc.secrets {
					if strings.Contains(all, secret) {
						t.Errorf("keyed=%v: %q reached the stored event:\n%s", keyed, secret, all)
					}
				}
				for _, k := range tc.keep {
					if !strings.Contains(all, k) {
						t.Errorf("keyed=%v: %q was lost:\n%s", keyed, k, all)
					}
				}
			})
		}
	}
}

// TestKeyedFingerprints checks the keyed form: it is not the unkeyed one
// (so a dictionary of SHA-256 prefixes finds nothing), it depends on the
// key, and the unkeyed fingerprint a sender sends (or the alias table's key
// hash) keys to the same stored fingerprint as the raw secret.
func TestKeyedFingerprints(t *testing.T) {
	s := NewWith(Config{Key: testKey})
	other := NewWith(Config{Key: []byte("another installation's key......")})
	dictionary := map[string]string{}
	for _, w := range []string{"hunter2", "password", "123456", "letmein"} {
		dictionary[Fingerprint(w)] = w
	}
	for _, secret := range []string{"hunter2", "sk_live_1", "ключ", ""} {
		fp := s.Fingerprint(secret)
		if !IsFingerprint(fp) {
			t.Errorf("keyed fingerprint of %q is %q, not fp_ and 16 hex digits", secret, fp)
		}
		if w, ok := dictionary[fp]; ok {
			t.Errorf("keyed fingerprint of %q found in an unkeyed dictionary as %q", secret, w)
		}
		if fp == other.Fingerprint(secret) {
			t.Errorf("two keys give the same fingerprint of %q", secret)
		}
		if got := s.Fingerprint(Fingerprint(secret)); got != fp {
			t.Errorf("keying the unkeyed fingerprint of %q gives %q, the secret itself %q", secret, got, fp)
		}
		if got := s.FingerprintOfHash(KeyHash(secret)); got != fp {
			t.Errorf("FingerprintOfHash(KeyHash(%q)) = %q, want %q", secret, got, fp)
		}
		e := apimeter.Event{RequestHeaders: apimeter.Headers{{Name: "X-Api-Key", Value: secret}, {Name: "Authorization", Value: "Bearer " + secret}}, SessionToken: "Bearer " + secret}
		sent := apimeter.Event{RequestHeaders: append(apimeter.Headers(nil), e.RequestHeaders...), SessionToken: e.SessionToken}
		New(nil, nil, -1).Scrub(&sent) // what a capture middleware sends
		s.Scrub(&e)
		s.Scrub(&sent)
		if secret != "" && (e.APIKeyID != fp || sent.APIKeyID != fp || e.SessionToken != fp || sent.SessionToken != fp ||
			e.RequestHeaders[1].Value != sent.RequestHeaders[1].Value) {
			t.Errorf("raw and sender-fingerprinted %q stored differently:\n%+v\n%+v", secret, e, sent)
		}
	}
	if IsFingerprint("fp_0123456789ABCDEF") || IsFingerprint("fp_0123456789abcde") || IsFingerprint("fp_hunter2") || !IsFingerprint("fp_0123456789abcdef") {
		t.Errorf("IsFingerprint must accept exactly fp_ and 16 lower-case hex digits")
	}
	// An attacker-sent fake fingerprint is keyed, never stored as sent.
	if fake := "fp_0123456789abcdef"; s.Fingerprint(fake) == fake {
		t.Errorf("a keyed Scrubber kept a sent fingerprint as it was")
	}
}

func FuzzScrubJSON(f *testing.F) {
	for _, seed := range []string{`{"password":"x"}`, `{"a":{"token":1},"b":[{"secret":[1,{"c":2}]}]}`, `{"pass\u0077ord":"\"`, `{"token":`, `[{"cvv":"1`, `{"x":"y","token":null}`, `{"token" : "a" , "b":"c"}`} {
		f.Add(seed)
	}
	s := NewWith(Config{Key: testKey})
	f.Fuzz(func(t *testing.T, in string) {
		out, changed := s.ScrubJSON(in)
		if !changed && out != in {
			t.Fatalf("ScrubJSON(%q) changed the text but said not", in)
		}
		var v any
		if json.Unmarshal([]byte(in), &v) != nil {
			return
		}
		var w any
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			t.Fatalf("ScrubJSON made valid JSON %q invalid: %q: %v", in, out, err)
		}
		checkNoSecretValues(t, s, w, in)
	})
}

// checkNoSecretValues fails when a secret field of v holds anything but a
// fingerprint, null, a boolean or "".
func checkNoSecretValues(t *testing.T, s *Scrubber, v any, in string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s.secretField(k) {
				switch x := x.(type) {
				case nil, bool:
				case string:
					if x != "" && !IsFingerprint(x) {
						t.Fatalf("secret field %q kept %q in %q", k, x, in)
					}
				default:
					t.Fatalf("secret field %q kept %v in %q", k, x, in)
				}
				continue
			}
			checkNoSecretValues(t, s, x, in)
		}
	case []any:
		for _, x := range v {
			checkNoSecretValues(t, s, x, in)
		}
	}
}

// occurrences counts sub in s, overlapping ones too ("=0?t=" twice in
// "=0?t=0?t=").
func occurrences(s, sub string) int {
	n := 0
	for i := strings.Index(s, sub); i >= 0; i = strings.Index(s, sub) {
		n++
		s = s[i+1:]
	}
	return n
}

// FuzzScrubURL: scrubbing a URL never panics, an unkeyed Scrubber's result
// is stable (scrubbing it again changes nothing), and a secret query
// parameter's raw value does not survive.
func FuzzScrubURL(f *testing.F) {
	for _, seed := range []string{"https://u:p@h.example/a;jsessionid=x/b?token=t&a=1#access_token=f&s=2", "/p?password=%zz", "http://@h/?#", ";;a=b?c#d=e", "https://h/p?x=1#frag"} {
		f.Add(seed)
	}
	unkeyed := New(nil, nil, -1)
	keyed := NewWith(Config{Key: testKey})
	f.Fuzz(func(t *testing.T, in string) {
		out := unkeyed.ScrubURL(in)
		if again := unkeyed.ScrubURL(out); again != out {
			t.Fatalf("ScrubURL(%q) = %q, and again %q", in, out, again)
		}
		k := keyed.ScrubURL(in)
		if _, q, ok := strings.Cut(in, "?"); ok && !strings.ContainsAny(in, "#") {
			// A value may also stand elsewhere in the URL (the path,
			// another parameter), which keeps it: the secret survived when
			// the answer has more of it than the URL has outside secret
			// parameters.
			params := strings.Split(q, "&")
			secretWith := func(v string) int {
				n := 0
				for _, p := range params {
					if name, pv, ok := strings.Cut(p, "="); ok && pv == v && keyed.secretParam(name) {
						n++
					}
				}
				return n
			}
			for _, p := range params {
				if name, v, ok := strings.Cut(p, "="); ok && len(v) > 3 && keyed.secretParam(name) && !strings.Contains(name, v) &&
					occurrences(k, "="+v) > occurrences(in, "="+v)-secretWith(v) && !strings.Contains(q, "="+v+"=") {
					t.Fatalf("secret %s=%s survived: %q", name, v, k)
				}
			}
		}
	})
}
