package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// Conn says how to reach the brokers. Plain Kafka needs Brokers alone;
// Azure Event Hubs' Kafka endpoint needs TLS and SASL PLAIN with the user
// "$ConnectionString" and the namespace's connection string as password
// (see EventHubs).
type Conn struct {
	Brokers []string
	// TLS turns on TLS with the system's roots, or with TLSConfig when set.
	TLS       bool
	TLSConfig *tls.Config
	// SASLUser and SASLPassword turn on SASL PLAIN.
	SASLUser     string
	SASLPassword string
}

// EventHubsUser is the SASL user of Event Hubs' Kafka endpoint.
const EventHubsUser = "$ConnectionString"

// EventHubs returns the settings of an Event Hubs namespace's Kafka
// endpoint from its connection string
// ("Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...").
func EventHubs(connectionString string) (Conn, error) {
	var host string
	for _, part := range strings.Split(connectionString, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(k, "Endpoint") {
			host = strings.TrimSuffix(strings.TrimPrefix(v, "sb://"), "/")
		}
	}
	if host == "" {
		return Conn{}, errors.New("event hubs: the connection string has no Endpoint=sb://NAMESPACE.servicebus.windows.net/")
	}
	return Conn{Brokers: []string{host + ":9093"}, TLS: true, SASLUser: EventHubsUser, SASLPassword: connectionString}, nil
}

func (c Conn) opts() ([]kgo.Opt, error) {
	if len(c.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers given")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.TLS || c.TLSConfig != nil {
		cfg := c.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if c.SASLUser != "" || c.SASLPassword != "" {
		if c.SASLUser == "" {
			return nil, fmt.Errorf("kafka: a SASL password needs a user (%s for Event Hubs)", EventHubsUser)
		}
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()))
	}
	return opts, nil
}
