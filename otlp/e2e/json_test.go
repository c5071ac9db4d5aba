package e2e_test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// otlpJSON writes m as OTLP/JSON: the protobuf JSON mapping with enums as
// numbers and trace and span ids in hex instead of base64, as the
// protocol specifies.
func otlpJSON(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseEnumNumbers: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	hexIDs(v)
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hexIDs(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
				if raw, err := base64.StdEncoding.DecodeString(s); err == nil {
					x[k] = hex.EncodeToString(raw)
				}
				continue
			}
			hexIDs(val)
		}
	case []any:
		for _, val := range x {
			hexIDs(val)
		}
	}
}
