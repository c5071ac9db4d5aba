// Command apimeter is self-hosted API analytics and usage metering: a
// Moesif-compatible collector, an embedded DuckDB store and the read APIs,
// in one binary. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

type cli struct {
	Version kong.VersionFlag `help:"Print the version (module version, VCS commit) and exit."`

	Serve  serveCmd  `cmd:"" help:"Run the collector and APIs on the embedded DuckDB store, or on a ClickHouse store shared with other collectors (--store)."`
	Demo   demoCmd   `cmd:"" help:"Start a server, feed it realistic traffic and show what it measured."`
	Apps   appsCmd   `cmd:"" help:"Manage application ids (write keys)."`
	Keys   keysCmd   `cmd:"" help:"Manage read and admin keys."`
	Portal portalCmd `cmd:"" help:"Manage the customer portal's tokens (docs/portal.md)."`
	Bench  benchCmd  `cmd:"" help:"Measure apimeter on this machine."`

	Gateway gatewayCmd `cmd:"" help:"Run a reverse proxy that records every call of the APIs behind it and enforces quotas."`
	Consume consumeCmd `cmd:"" help:"Read API calls from Kafka or Azure Event Hubs (seed 002's APIM messages or collector JSON), pair and store them."`

	Aliases aliasesCmd `cmd:"" help:"Manage the alias table (API key, token or client id -> user) of a running server."`
	Usage   usageCmd   `cmd:"" help:"Show calls, errors and bytes per customer for a billing period, from a running server."`
}

// newParser builds the command line parser of c; tests pass options that
// keep it from exiting the process.
func newParser(c *cli, opts ...kong.Option) (*kong.Kong, error) {
	return kong.New(c, append([]kong.Option{
		kong.Name("apimeter"),
		kong.Description("Self-hosted API analytics and usage metering."),
		kong.Vars{"version": version()},
	}, opts...)...)
}

func main() {
	var c cli
	parser, err := newParser(&c)
	if err != nil {
		panic(err) // a mistake in the flag definitions, not in the user's input
	}
	kctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprint(os.Stderr, usageError(err))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "apimeter:", err)
		os.Exit(1)
	}
}

// usageError is what a bad command line prints: the error and where the
// help is, not the whole help.
func usageError(err error) string {
	help := "apimeter --help"
	var pe *kong.ParseError
	if errors.As(err, &pe) && pe.Context != nil {
		if cmd := pe.Context.Command(); cmd != "" {
			help = "apimeter " + cmd + " --help"
		}
	}
	return fmt.Sprintf("apimeter: %v\nRun '%s' for usage.\n", err, help)
}
