package capture

import (
	"context"

	"github.com/apimeter/apimeter"
)

// sliceSink keeps what it is sent (single-goroutine use in tests).
type sliceSink struct{ events []apimeter.Event }

func (s *sliceSink) Send(_ context.Context, evs []apimeter.Event) error {
	s.events = append(s.events, evs...)
	return nil
}

func (s *sliceSink) Close(context.Context) error { return nil }
