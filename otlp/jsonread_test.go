package otlp

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// jsonTraceSeeds are OTLP/JSON trace exports as senders write them: hex
// ids, lowerCamelCase and proto names, integers as strings and as numbers,
// enums as numbers and names, escapes, nulls and unknown fields.
var jsonTraceSeeds = []string{
	`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}],"droppedAttributesCount":0},` +
		`"scopeSpans":[{"scope":{"name":"otelhttp","version":"0.72.0","attributes":[]},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C",` +
		`"spanId":"eee19b7ec3c1b174","parentSpanId":"","traceState":"a=b","flags":257,"name":"GET /users/{id}","kind":2,` +
		`"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,"attributes":[` +
		`{"key":"http.request.method","value":{"stringValue":"GET"}},{"key":"url.path","value":{"stringValue":"/users/7\u00e9é😀\"\\\/\n"}},` +
		`{"key":"http.response.status_code","value":{"intValue":200}},{"key":"n","value":{"intValue":"-9223372036854775808"}},` +
		`{"key":"d","value":{"doubleValue":-1.5e-3}},{"key":"b","value":{"boolValue":true}},{"key":"raw","value":{"bytesValue":"aGk-_w"}},` +
		`{"key":"http.request.header.x","value":{"arrayValue":{"values":[{"stringValue":"1"},{"intValue":"2"},{}]}}},` +
		`{"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}}},{"key":"z","value":{"stringValue":null,"intValue":"3"}},` +
		`{"key":"e","value":{}},{"keyStrindex":"4"}],"droppedAttributesCount":1,` +
		`"events":[{"timeUnixNano":"1544712660500000000","name":"exception","attributes":[{"key":"exception.message","value":{"stringValue":"boom"}}]}],` +
		`"links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","flags":1,"attributes":[]}],` +
		`"droppedEventsCount":2,"droppedLinksCount":3,"status":{"code":"STATUS_CODE_ERROR","message":"failed"},` +
		`"unknownField":{"a":[1,-2.5e+10,"x\u0041",true,false,null,{}]}}]}],"schemaUrl":"https://opentelemetry.io/schemas/1.26.0"}]}`,
	`{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",` +
		`"kind":"SPAN_KIND_SERVER","start_time_unix_nano":"1","attributes":[{"key":"http.method","value":{"string_value":"GET"}},` +
		`{"key":"http.target","value":{"string_value":"/?q"}}],"status":null,"events":null}]}],"resource":null}]}`,
	` { "resourceSpans" : [ ] } `,
	`{}`,
}

var jsonLogSeeds = []string{
	`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeLogs":[{"scope":{"name":"access"},` +
		`"logRecords":[{"timeUnixNano":"1544712660000000000","observedTimeUnixNano":1544712660000000001,"severityNumber":9,` +
		`"severityText":"INFO","body":{"kvlistValue":{"values":[{"key":"http.request.method","value":{"stringValue":"GET"}},` +
		`{"key":"url.path","value":{"stringValue":"/m"}}]}},"attributes":[{"key":"http.server.request.duration","value":{"doubleValue":0.25}}],` +
		`"droppedAttributesCount":0,"flags":1,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","eventName":"access"},` +
		`{"time_unix_nano":"1","severity_number":"SEVERITY_NUMBER_WARN","body":{"stringValue":"plain"}}],"schemaUrl":"s"}]}]}`,
}

// TestJSONReaderReads: the exports senders write are read by jsonReader
// (not left to protojson), into what protojson reads from them.
func TestJSONReaderReads(t *testing.T) {
	for i, s := range jsonTraceSeeds {
		fast, slow := &coltracepb.ExportTraceServiceRequest{}, &coltracepb.ExportTraceServiceRequest{}
		if !readTracesJSON([]byte(s), fast) {
			t.Fatalf("trace seed %d: jsonReader gave up", i)
		}
		if err := jsonIn.Unmarshal([]byte(s), slow); err != nil {
			t.Fatalf("trace seed %d: protojson: %v", i, err)
		}
		fixTraceIDs(slow)
		if !proto.Equal(fast, slow) {
			t.Fatalf("trace seed %d:\njsonReader %v\nprotojson  %v", i, fast, slow)
		}
	}
	for i, s := range jsonLogSeeds {
		fast, slow := &collogspb.ExportLogsServiceRequest{}, &collogspb.ExportLogsServiceRequest{}
		if !readLogsJSON([]byte(s), fast) {
			t.Fatalf("log seed %d: jsonReader gave up", i)
		}
		if err := jsonIn.Unmarshal([]byte(s), slow); err != nil {
			t.Fatalf("log seed %d: protojson: %v", i, err)
		}
		fixLogIDs(slow)
		if !proto.Equal(fast, slow) {
			t.Fatalf("log seed %d:\njsonReader %v\nprotojson  %v", i, fast, slow)
		}
	}
}

// TestJSONReaderGivesUp: input protojson refuses is never read, and what
// jsonReader leaves to protojson is still decoded by it.
func TestJSONReaderGivesUp(t *testing.T) {
	for _, s := range []string{
		``, `null`, `[]`, `{"resourceSpans":[]}x`, `{"resourceSpans":[],"resourceSpans":[]}`,
		`{"resourceSpans":[],"resource_spans":[]}`, `{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\ud800"}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\ud83d\ude00"}]}]}]}`, // a valid pair, left to protojson all the same
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"` + "\xff" + `"}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"value":{"stringValue":"a","intValue":"1"}}]}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"flags":4294967296}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":01}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"unknown":[1,]}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"2"}]}]}]}`,                           // an unknown name to protojson: dropped, not refused
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"W47/95gDgQPSabYzgT/GDA=="}]}]}]}`, // base64
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":1e3}]}]}]}`,
	} {
		fast, slow := &coltracepb.ExportTraceServiceRequest{}, &coltracepb.ExportTraceServiceRequest{}
		if readTracesJSON([]byte(s), fast) {
			t.Fatalf("jsonReader read %q", s)
		}
		_, e := decodeTraces([]byte(s), encJSON, fast)
		if err := jsonIn.Unmarshal([]byte(s), slow); (err != nil) != (e != nil) {
			t.Fatalf("%q: decodeTraces %v, protojson %v", s, e, err)
		} else if err == nil {
			fixTraceIDs(slow)
			if !proto.Equal(fast, slow) {
				t.Fatalf("%q: decodeTraces %v, protojson %v", s, fast, slow)
			}
		}
	}
}

// FuzzJSONReader is a differential test of jsonReader against protojson
// (with fixID for the hex ids): whatever jsonReader reads, protojson
// accepts too, into the same message. Input jsonReader gives up on goes to
// protojson, so the receiver's answer is protojson's for it.
func FuzzJSONReader(f *testing.F) {
	for _, s := range jsonTraceSeeds {
		f.Add([]byte(s), false)
	}
	for _, s := range jsonLogSeeds {
		f.Add([]byte(s), true)
	}
	for _, req := range seedTraces() {
		j, _ := protojson.Marshal(req)
		f.Add(j, false)
	}
	for _, req := range seedLogs() {
		j, _ := protojson.Marshal(req)
		f.Add(j, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, logs bool) {
		var fast, slow proto.Message
		var fastOK bool
		var slowErr error
		if logs {
			f, s := &collogspb.ExportLogsServiceRequest{}, &collogspb.ExportLogsServiceRequest{}
			fastOK = readLogsJSON(data, f)
			if slowErr = jsonIn.Unmarshal(data, s); slowErr == nil {
				fixLogIDs(s)
			}
			fast, slow = f, s
		} else {
			f, s := &coltracepb.ExportTraceServiceRequest{}, &coltracepb.ExportTraceServiceRequest{}
			fastOK = readTracesJSON(data, f)
			if slowErr = jsonIn.Unmarshal(data, s); slowErr == nil {
				fixTraceIDs(s)
			}
			fast, slow = f, s
		}
		if !fastOK {
			return
		}
		if slowErr != nil {
			t.Fatalf("jsonReader read what protojson refuses (%v)", slowErr)
		}
		if !proto.Equal(fast, slow) {
			t.Fatalf("jsonReader and protojson differ:\njsonReader %v\nprotojson  %v", fast, slow)
		}
	})
}
