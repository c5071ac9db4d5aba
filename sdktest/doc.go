// Package sdktest proves that Moesif's own SDKs work against apimeter's
// collector with nothing changed but their base URI. Its test runs real
// apps instrumented with the real SDKs (node/: moesif-nodejs in Express;
// go/: moesifmiddleware-go around net/http, a module of its own so that
// apimeter's go.mod gains no dependency) against an in-process apimeter,
// and checks what was stored and what the SDKs were answered.
package sdktest
