// Command apimeter is self-hosted API analytics and usage metering: a
// Moesif-compatible collector, an embedded DuckDB store and the read APIs,
// in one binary. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

type cli struct {
	Serve serveCmd `cmd:"" help:"Run the collector and APIs on an embedded DuckDB store."`
	Demo  demoCmd  `cmd:"" help:"Start a server, feed it realistic traffic and show what it measured."`
	Apps  appsCmd  `cmd:"" help:"Manage application ids (write keys)."`
	Keys  keysCmd  `cmd:"" help:"Manage read and admin keys."`
	Bench benchCmd `cmd:"" help:"Measure apimeter on this machine."`

	Consume consumeCmd `cmd:"" help:"Read API calls from Kafka or Azure Event Hubs (seed 002's APIM messages or collector JSON), pair and store them."`

	Aliases aliasesCmd `cmd:"" help:"Manage the alias table (API key, token or client id -> user) of a running server."`
	Usage   usageCmd   `cmd:"" help:"Show calls, errors and bytes per customer for a billing period, from a running server."`
}

func main() {
	var c cli
	kctx := kong.Parse(&c,
		kong.Name("apimeter"),
		kong.Description("Self-hosted API analytics and usage metering."),
		kong.UsageOnError(),
	)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "apimeter:", err)
		os.Exit(1)
	}
}
