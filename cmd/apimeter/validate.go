package main

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/apimeter/apimeter/kafka"
)

// Each flags struct has a Validate method, which kong calls after parsing
// and before Run, so that a value with no sensible meaning stops the
// command at start with a message naming the flag, instead of being
// replaced by a default or failing every request later. A struct that
// embeds another calls the embedded one's Validate (Go promotes only one
// method of a name, so kong would not find both).

func (f *serverFlags) Validate() error {
	return errors.Join(
		atLeast("--body-cap", f.BodyCap, 0),
		atLeast("--max-body-bytes", f.MaxBodyBytes, 1),
		atLeast("--max-batch-events", f.MaxBatchEvents, 1),
		positiveDuration("--dedupe-horizon", f.DedupeHorizon),
		nonZeroDuration("--daily-interval", f.DailyInterval, "a negative interval turns the rollup pass off"),
		atLeast("--retention", f.Retention, 0),
		f.storeFlags.Validate(),
		f.statsFlags.Validate(),
		f.identityFlags.Validate(),
		f.observability.Validate(),
	)
}

func (f *observability) Validate() error {
	_, _, err := f.memorySizes()
	return err
}

func (f *statsFlags) Validate() error {
	if f.StatsQuota < -1 {
		return fmt.Errorf("--stats-quota %d: want calls per minute (at least 1), or 0 or -1 for no quota", f.StatsQuota)
	}
	return nil
}

func (f *identityFlags) Validate() error {
	var errs []error
	if f.BillingDay < 1 || f.BillingDay > 31 {
		errs = append(errs, fmt.Errorf("--billing-day %d: want a day of the month, 1 to 31", f.BillingDay))
	}
	if f.BillingTZ != "" {
		if _, err := time.LoadLocation(f.BillingTZ); err != nil {
			errs = append(errs, fmt.Errorf("--billing-tz %q: want an IANA time zone name such as Europe/Berlin", f.BillingTZ))
		}
	}
	errs = append(errs, atLeast("--jwt-leeway", f.JWTLeeway, 0))
	return errors.Join(errs...)
}

func (c *demoCmd) Validate() error {
	var errs []error
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("--rate %v: want live calls per second above 0", c.Rate))
	}
	return errors.Join(append(errs,
		atLeast("--backfill", c.Backfill, 0),
		positiveDuration("--span", c.Span),
	)...)
}

func (c *benchIngestCmd) Validate() error {
	var errs []error
	if c.DupRate < 0 || c.DupRate > 1 || math.IsNaN(c.DupRate) {
		errs = append(errs, fmt.Errorf("--dup-rate %v: want a share from 0 to 1", c.DupRate))
	}
	return errors.Join(append(errs,
		c.storeFlags.Validate(),
		atLeast("--events", c.Events, 1),
		atLeast("--clients", c.Clients, 1),
		atLeast("--batch", c.Batch, 1),
		positiveDuration("--timeout", c.Timeout),
	)...)
}

func (c *benchCaptureCmd) Validate() error {
	var errs []error
	if !(c.SampleRate > 0 && c.SampleRate <= 1) {
		errs = append(errs, fmt.Errorf("--sample-rate %v: want a share above 0 and at most 1", c.SampleRate))
	}
	if c.CPUProfile != "" && c.ProfileDir != "" {
		errs = append(errs, errors.New("--cpu-profile and --profile-dir exclude each other"))
	}
	return errors.Join(append(errs,
		atLeast("--rounds", c.Rounds, 1),
		positiveDuration("--duration", c.Duration),
		atLeast("--clients", c.Clients, 1),
		atLeast("--body-bytes", c.BodyBytes, 0),
		atLeast("--batch-size", c.BatchSize, 0),
		atLeast("--queue-size", c.QueueSize, 0),
	)...)
}

// atLeast refuses a number below min, naming the flag.
func atLeast[N int | int64 | time.Duration](flag string, v, min N) error {
	if v < min {
		return fmt.Errorf("%s %v: must be at least %v", flag, v, min)
	}
	return nil
}

func positiveDuration(flag string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s %v: must be a positive duration such as 90s or 1h", flag, d)
	}
	return nil
}

func nonZeroDuration(flag string, d time.Duration, negative string) error {
	if d == 0 {
		return fmt.Errorf("%s 0: must be a positive duration such as 5m (%s)", flag, negative)
	}
	return nil
}

func (c *gatewayCmd) Validate() error {
	if !c.Kafka.enabled() {
		return nil
	}
	var errs []error
	if c.Collector != "" {
		errs = append(errs, errors.New("--collector and --kafka-brokers (or --kafka-event-hubs) exclude each other: the gateway writes to one place; store the topic with apimeter consume (--collector to post it to a collector)"))
	}
	if c.Kafka.Topic == "" {
		errs = append(errs, errors.New("--kafka-topic: name the topic (event hub) the calls are written to"))
	}
	if c.Kafka.DeliveryTimeout < time.Second {
		errs = append(errs, fmt.Errorf("--kafka-delivery-timeout %v: must be at least 1s", c.Kafka.DeliveryTimeout))
	}
	return errors.Join(append(errs, c.Kafka.validate("--kafka-"))...)
}

func (c *consumeCmd) Validate() error {
	return errors.Join(c.serverFlags.Validate(), c.consumerFlags.validate("--"))
}

func (c *serveCmd) Validate() error {
	return errors.Join(c.serverFlags.Validate(), c.Kafka.validate("--kafka-"))
}

// validate checks what kafka.Conn would refuse only at the first
// connection; prefix is how the command spells its flags ("--" or
// "--kafka-"). It is not named Validate: a command embeds it beside
// serverFlags, and two promoted Validate methods would hide both.
func (f *kafkaConnFlags) validate(prefix string) error {
	if !f.enabled() {
		return nil
	}
	var errs []error
	if f.SASLPassword != "" && f.SASLUser == "" && f.EventHubs == "" {
		errs = append(errs, fmt.Errorf("%ssasl-password needs %ssasl-user (%s for Event Hubs)", prefix, prefix, kafka.EventHubsUser))
	}
	if f.EventHubs != "" {
		if _, err := kafka.EventHubs(f.EventHubs); err != nil {
			errs = append(errs, fmt.Errorf("%sevent-hubs: %w", prefix, err))
		}
	}
	return errors.Join(errs...)
}
