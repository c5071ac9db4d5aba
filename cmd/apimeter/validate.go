package main

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/apimeter/apimeter/instance"
)

func (c *demoCmd) Validate() error {
	var errs []error
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("--rate %v: want live calls per second above 0", c.Rate))
	}
	return errors.Join(append(errs,
		instance.AtLeast("--backfill", c.Backfill, 0),
		instance.PositiveDuration("--span", c.Span),
	)...)
}

func (c *gatewayCmd) Validate() error {
	if !c.Kafka.Enabled() {
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
	return errors.Join(append(errs, c.Kafka.Check("--kafka-"))...)
}

func (c *consumeCmd) Validate() error {
	return errors.Join(c.Config.Validate(), c.ConsumerConfig.Check("--"))
}

func (c *serveCmd) Validate() error {
	return errors.Join(c.Config.Validate(), c.Kafka.Check("--kafka-"))
}
