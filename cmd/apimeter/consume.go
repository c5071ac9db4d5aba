package main

import (
	"context"

	"github.com/apimeter/apimeter/instance"
)

type consumeCmd struct {
	instance.ConsumerConfig `envprefix:"APIMETER_KAFKA_"`
	Collector               string `env:"APIMETER_COLLECTOR" placeholder:"URL" help:"Post the calls to this running collector (with --app-id as write key) instead of opening a store here."`
	instance.Config         `group:"Store (without --collector)"`
}

func (c *consumeCmd) Run(ctx context.Context) error {
	return instance.Consume(ctx, c.ConsumerConfig, c.Collector, c.Config)
}
