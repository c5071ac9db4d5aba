package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/apimeter/apimeter/internal/loadrun"
)

// GatewayFaultsCmd is `apimeter bench gateway-faults`: the fault run behind the gateway
// (loadrun.GatewayFaults).
type GatewayFaultsCmd struct {
	Clients       int           `default:"8" help:"Concurrent API clients."`
	Pace          time.Duration `default:"5ms" help:"Pause between two calls of a client."`
	MaxCalls      int           `default:"200000" help:"Calls of all clients together, at most."`
	Phase         time.Duration `default:"10s" help:"Length of the quiet phases around the faults."`
	RedisStop     time.Duration `default:"8s" help:"How long Redis is stopped with SIGSTOP."`
	RedisDown     time.Duration `default:"5s" help:"How long Redis is killed before it is restarted."`
	CollectorDown time.Duration `default:"8s" help:"How long the collector is killed before it is restarted."`
	GatewayBin    string        `type:"existingfile" placeholder:"FILE" help:"Run the gateway from this apimeter binary (another build, to compare); default this one."`
}

func (c *GatewayFaultsCmd) Validate() error {
	if c.Clients < 1 || c.MaxCalls < 1 || c.Phase <= 0 || c.RedisStop < 0 || c.RedisDown < 0 || c.CollectorDown < 0 {
		return errors.New("--clients, --max-calls and --phase must be positive; the fault lengths at least 0")
	}
	if c.Phase*4+c.RedisStop+c.RedisDown+c.CollectorDown > 30*time.Minute {
		return errors.New("the run would take more than 30 minutes")
	}
	return nil
}

func (c *GatewayFaultsCmd) Run(ctx context.Context) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	rep, err := loadrun.GatewayFaults(ctx, loadrun.GatewayFaultConfig{Bin: bin, GatewayBin: c.GatewayBin, Clients: c.Clients, Pace: c.Pace, MaxCalls: c.MaxCalls,
		Phase: c.Phase, RedisStop: c.RedisStop, RedisDown: c.RedisDown, CollectorDown: c.CollectorDown, Out: os.Stderr})
	if err != nil {
		return err
	}
	rep.Print(os.Stdout)
	if rep.Lost > 0 || rep.Doubled > 0 {
		return fmt.Errorf("%d acknowledged calls lost, %d doubled", rep.Lost, rep.Doubled)
	}
	return nil
}
