// Package jsontext holds the JSON text routines of apimeter's hot paths:
// AppendString and AppendText escape a string into a buffer without
// allocating (16 bytes a step with SSE2 on amd64), AppendHeaders writes
// headers as a JSON object, ScanHeaders reads one as the SDKs send it, and
// ValidString and ValidJSON make outside text valid UTF-8 without lone
// surrogate escapes.
//
// Each gives what encoding/json gives for the same input (their fuzz
// targets check it against encoding/json), so the collector, the capture
// middleware and the stores can use them in its place.
package jsontext
