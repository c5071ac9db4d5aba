// Command apimeter is self-hosted API analytics and usage metering: a
// Moesif-compatible collector, an embedded DuckDB store and the read APIs,
// in one binary. See README.md.
//
// This package is the command line: flags, help and one call per command
// into package instance, which assembles what runs (docs/architecture.md);
// the benchmark harnesses of apimeter bench are in internal/bench.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"

	"github.com/apimeter/apimeter/internal/bench"
)

type cli struct {
	VersionFlag kong.VersionFlag `name:"version" help:"Print the version (module version, VCS commit) and exit."`
	VersionCmd  versionCmd       `cmd:"" name:"version" help:"Print the version (module version, VCS commit)."`
	Help        helpCmd          `cmd:"" help:"Show the help of a command (apimeter help serve)."`
	Completion  completionCmd    `cmd:"" help:"Print the shell completion set-up for bash, zsh or fish."`

	Serve  serveCmd  `cmd:"" help:"Run the collector and APIs on the embedded DuckDB store, or on a ClickHouse store shared with other collectors (--store)."`
	Demo   demoCmd   `cmd:"" help:"Start a server, feed it realistic traffic and show what it measured."`
	Apps   appsCmd   `cmd:"" help:"Manage application ids (write keys)."`
	Keys   keysCmd   `cmd:"" help:"Manage read and admin keys."`
	Portal portalCmd `cmd:"" help:"Manage the customer portal's tokens (docs/portal.md)."`
	Bench  benchCmd  `cmd:"" help:"Measure apimeter on this machine."`

	Gateway gatewayCmd `cmd:"" help:"Run a reverse proxy that records every call of the APIs behind it and enforces quotas."`
	Consume consumeCmd `cmd:"" help:"Read API calls from Kafka or Azure Event Hubs (Azure API Management's log-to-eventhub messages or collector JSON), pair and store them."`

	Aliases aliasesCmd `cmd:"" help:"Manage the alias table (API key, token or client id -> user) of a running server."`
	Usage   usageCmd   `cmd:"" help:"Show calls, errors and bytes per customer for a billing period, from a running server."`
	Billing billingCmd `cmd:"" help:"Usage per customer and month: export, push to Stripe, signed statements and their verification."`
	Export  exportCmd  `cmd:"" help:"Write the events of a time range to a Parquet or CSV file, as stored (scrubbed), from a running server with the embedded store."`
	Meters  metersCmd  `cmd:"" help:"Show the meters of a running server (docs/metering.md)."`
	Alerts  alertsCmd  `cmd:"" help:"Show the alert rules of a running server and their state (docs/alerts.md)."`
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
	// A shell asking what may follow (COMP_LINE set, see apimeter
	// completion) is answered here and the process exits.
	kongplete.Complete(parser)
	args := os.Args[1:]
	if len(args) == 0 {
		// Without a command there is nothing to do but say what there is:
		// the help, as a success, not a usage error.
		args = []string{"--help"}
	}
	kctx, err := parser.Parse(args)
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

// benchCmd holds the benchmark harnesses of internal/bench.
type benchCmd struct {
	Ingest        bench.IngestCmd        `cmd:"" help:"Post batches of generated events from concurrent clients and compare with the store's bare write (DuckDB's raw appender, or ClickHouse INSERTs)."`
	Capture       bench.CaptureCmd       `cmd:"" help:"Loopback load run: the same API bare and wrapped by the capture middleware, in alternating rounds."`
	Gateway       bench.GatewayCmd       `cmd:"" help:"Loopback load run: one upstream behind a bare httputil.ReverseProxy, the gateway, and the gateway with its collector down, in alternating rounds."`
	Faults        bench.FaultsCmd        `cmd:"" help:"Fault-and-load run against a serve child process: retrying senders while it is SIGKILLed, Redis stopped, a poison sender and a slow-client flood (--clickhouse: on a clickhouse-server child, itself SIGKILLed mid-load); reports acknowledged/missing/doubled."`
	Memory        bench.MemoryCmd        `cmd:"" help:"Store N events through a serve child process and report its resident memory."`
	GatewayFaults bench.GatewayFaultsCmd `cmd:"" name:"gateway-faults" help:"Fault run behind the gateway: API clients through a gateway child (quotas on Redis, events to a serve child) while Redis is stopped, killed and restarted and the collector killed and restarted; reports acknowledged/lost/doubled and latency per phase."`
	ConsumeFaults bench.ConsumeFaultsCmd `cmd:"" name:"consume-faults" help:"Fault run of apimeter consume: calls written to a kfake topic as Azure APIM's log-to-eventhub policy writes them while the consumer child is SIGKILLed and restarted; reports acknowledged/lost/doubled and the time to stored per phase."`
	Dataset       bench.DatasetCmd       `cmd:"" help:"Write a generated quarter of realistic traffic (Zipf users, companies, keys, 8 APIs, 40 routes, diurnal pattern) through the store's bulk path and fold its rollups."`
	Queries       bench.QueriesCmd       `cmd:"" help:"Time the seven dashboard queries of the rollups' benchmark through the Metrics API next to hand-written scans of the raw events, on a store from bench dataset, and compare the answers."`
	Freshness     bench.FreshnessCmd     `cmd:"" help:"Post single calls while a serve child process takes background ingest, and time each to its acknowledgement and to the Metrics API answer that counts it."`
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
