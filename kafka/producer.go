package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/httpmsg"
)

// Partitions of Azure API Management's layout: requests on one, responses on the other,
// so each is read in order.
const (
	RequestPartition  int32 = 0
	ResponsePartition int32 = 1
)

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	Conn
	Topic string
	// Format of the records written; empty means FormatJSON.
	Format Format
	// Encoder writes FormatAPIM messages (body cut at 1024 characters by
	// default).
	Encoder httpmsg.Encoder
	// Linger is how long records wait to be batched. Zero means 5 ms.
	Linger time.Duration
	// DeliveryTimeout bounds how long Send waits for the brokers (retries
	// included) before the batch counts as failed; at least 1 s. Zero means 30 s.
	DeliveryTimeout time.Duration
	Logger          *slog.Logger
	// ClientOpts are added to the franz-go client's options.
	ClientOpts []kgo.Opt
}

// Producer writes API calls to a topic. It holds the connections; each
// capture writes through a Sink of its own (Producer.Sink), with buffers of
// its own. The Producer is itself a capture.Sink too, for a program with
// one capture.
type Producer struct {
	cfg ProducerConfig
	cl  *kgo.Client

	mu   sync.Mutex // one Send at a time through sink
	sink *Sink
}

// NewProducer connects a Producer.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if cfg.Topic == "" {
		return nil, errors.New("kafka producer: a topic is required")
	}
	if cfg.Format == "" {
		cfg.Format = FormatJSON
	}
	if _, err := ParseFormat(string(cfg.Format)); err != nil {
		return nil, err
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opts, err := cfg.Conn.opts()
	if err != nil {
		return nil, err
	}
	opts = append(opts, kgo.DefaultProduceTopic(cfg.Topic), kgo.ProducerLinger(cfg.Linger),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout))
	if cfg.Format == FormatAPIM {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	if cfg.SASLUser == EventHubsUser {
		// Event Hubs' Kafka endpoint takes gzip or no compression, not
		// franz-go's default snappy; gzip at its fastest level, as the HTTP
		// sink's default, keeps the capturing host's CPU first.
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression().WithLevel(1), kgo.NoCompression()))
	}
	opts = append(opts, cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	p := &Producer{cfg: cfg, cl: cl}
	p.sink = p.Sink()
	return p, nil
}

// Send writes events and waits until the brokers have them, as a Sink of
// p does; calls from several goroutines take turns.
func (p *Producer) Send(ctx context.Context, events []apimeter.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sink.Send(ctx, events)
}

// SendMessages writes APIM log-to-eventhub messages as they are (relaying what a
// policy wrote elsewhere, say): those starting "request:" to
// RequestPartition, the others to ResponsePartition. It needs FormatAPIM.
func (p *Producer) SendMessages(ctx context.Context, msgs [][]byte) error {
	if p.cfg.Format != FormatAPIM {
		return errors.New("kafka producer: SendMessages needs the apim format")
	}
	rs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		part := ResponsePartition
		if bytes.HasPrefix(m, []byte("request:")) {
			part = RequestPartition
		}
		rs[i] = &kgo.Record{Partition: part, Value: m}
	}
	return p.cl.ProduceSync(ctx, rs...).FirstErr()
}

// CheckTopic asks the brokers whether the topic exists and, for
// FormatAPIM, has the two partitions the format writes to. It creates
// nothing. The error says what is wrong and how to mend it; records sent
// meanwhile wait, then fail and are counted, as with any broker fault.
func (p *Producer) CheckTopic(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(p.cfg.Topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, p.cl)
	if err != nil {
		return fmt.Errorf("kafka topic %q: the brokers did not answer: %w", p.cfg.Topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != p.cfg.Topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return fmt.Errorf("kafka topic %q does not exist: create it (with 2 partitions for --kafka-format apim); nothing is written until it does", p.cfg.Topic)
			}
			return fmt.Errorf("kafka topic %q: %w", p.cfg.Topic, err)
		}
		if p.cfg.Format == FormatAPIM && len(t.Partitions) < 2 {
			return fmt.Errorf("kafka topic %q has %d partition(s): the apim format writes requests to partition %d and responses to %d, so their records fail; give the topic 2 partitions", p.cfg.Topic, len(t.Partitions), RequestPartition, ResponsePartition)
		}
		return nil
	}
	return fmt.Errorf("kafka topic %q: the brokers' answer does not name it", p.cfg.Topic)
}

// Close flushes what is buffered and disconnects.
func (p *Producer) Close(ctx context.Context) error {
	err := p.cl.Flush(ctx)
	p.cl.Close()
	return err
}
