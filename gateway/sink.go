package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
)

// Ingester takes events into a store through the collector's path
// (identify, scrub, store, usage counters); *server.Server is one.
type Ingester interface {
	Ingest(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error)
}

// IngestSink is a capture.Sink that hands batches to an Ingester in the
// same process: the gateway inside `apimeter serve` writes into the
// server's store without HTTP. Events get the upstream's org and env.
type IngestSink struct {
	Ingester Ingester
	Org, Env string
}

// Send implements capture.Sink.
func (s *IngestSink) Send(ctx context.Context, events []apimeter.Event) error {
	for i := range events {
		events[i].Org, events[i].Env = s.Org, s.Env
	}
	_, err := s.Ingester.Ingest(ctx, events)
	return err
}

// Close implements capture.Sink.
func (s *IngestSink) Close(context.Context) error { return nil }

// SinkFunc makes the Sink of one upstream's events.
type SinkFunc func(u Upstream) (capture.Sink, error)

// IngestSinks sends every upstream's events to ing, with the upstream's
// org and env.
func IngestSinks(ing Ingester) SinkFunc {
	return func(u Upstream) (capture.Sink, error) {
		if u.Org == "" || u.Env == "" {
			return nil, errors.New("upstream " + u.Name + ": org and env are required when events go into the embedded store")
		}
		return &IngestSink{Ingester: ing, Org: u.Org, Env: u.Env}, nil
	}
}

// CollectorSinks sends every upstream's events to the collector at url with
// the upstream's application id, or appID when it has none.
func CollectorSinks(url, appID string, client *http.Client) SinkFunc {
	return func(u Upstream) (capture.Sink, error) {
		id := u.AppID
		if id == "" {
			id = appID
		}
		if id == "" {
			return nil, errors.New("upstream " + u.Name + ": an application id is required (--app-id, or app_id in the config)")
		}
		return capture.NewHTTPSink(capture.HTTPSinkConfig{URL: url, ApplicationID: id, Client: client})
	}
}
