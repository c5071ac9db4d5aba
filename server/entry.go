package server

import "github.com/apimeter/apimeter"

// CheckEvent applies the collector's per-event caps (URI, header values,
// metadata) to an event built by another entry point (OTLP), so that every
// way in refuses the same events. index names the event in the error, or
// -1.
func (s *Server) CheckEvent(e *apimeter.Event, index int) error { return s.checkCaps(e, index) }
