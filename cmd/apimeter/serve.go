package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/instance"
)

type serveCmd struct {
	instance.Config
	GatewayConfig string `type:"existingfile" env:"APIMETER_GATEWAY_CONFIG" placeholder:"FILE" help:"Also run a gateway (docs/gateway.md) whose events go straight into this server's store."`

	instance.AlertsConfig

	Kafka instance.ConsumerConfig `embed:"" prefix:"kafka-" envprefix:"APIMETER_KAFKA_" group:"Kafka / Event Hubs consumer (off without --kafka-brokers)"`
}

func (c *serveCmd) Run(ctx context.Context) error {
	return instance.Serve(ctx, c.Config, c.GatewayConfig, c.Kafka, c.AlertsConfig)
}

type appsCmd struct {
	Create appsCreateCmd `cmd:"" help:"Create an application id for an org and environment; prints the id alone on its last line."`
	List   appsListCmd   `cmd:"" help:"List application ids."`
}

type appsCreateCmd struct {
	Data string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	instance.StoreConfig
	Org string `required:"" help:"Organization the events belong to."`
	Env string `default:"prod" help:"Environment (e.g. prod, test)."`
}

func (c *appsCreateCmd) Run(ctx context.Context) error {
	cat, done, err := instance.OpenCatalog(ctx, c.StoreConfig, c.Data)
	if err != nil {
		return err
	}
	defer done()
	a, err := cat.CreateApp(ctx, c.Org, c.Env)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "created application id for org %s, env %s; send it as X-Moesif-Application-Id:\n", a.Org, a.Env)
	fmt.Println(a.ID)
	return nil
}

type appsListCmd struct {
	Data string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	instance.StoreConfig
	listFormat
}

func (c *appsListCmd) Run(ctx context.Context) error {
	if err := instance.ExistingDataDir(c.StoreConfig, c.Data); err != nil {
		return err
	}
	cat, done, err := instance.OpenCatalog(ctx, c.StoreConfig, c.Data)
	if err != nil {
		return err
	}
	defer done()
	list := cat.Apps.List()
	slices.SortFunc(list, func(a, b apps.App) int { return a.Created.Compare(b.Created) })
	if c.JSON {
		return printJSONList(list)
	}
	for _, a := range list {
		fmt.Printf("%s\t%s\t%s\t%s\n", a.Org, a.Env, a.Created.Format(time.RFC3339), a.ID)
	}
	return nil
}
