package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/apimeter/apimeter/internal/loadrun"
)

// ConsumeFaultsCmd is `apimeter bench consume-faults`: the fault run of the
// Kafka / Event Hubs consumer (loadrun.ConsumeFaults).
type ConsumeFaultsCmd struct {
	Duration       time.Duration `default:"60s" help:"How long calls are written to the topic; the kills are spread over it."`
	Rate           int           `default:"500" help:"Calls written a second (a request and a response record each)."`
	Kills          int           `default:"3" help:"Times the consumer is SIGKILLed and started again."`
	Down           time.Duration `default:"1s" help:"How long the consumer stays dead after each kill."`
	SessionTimeout time.Duration `default:"6s" help:"The consumer group's session timeout (a killed member holds its partitions this long); 6s to 5m, the brokers' default range."`
}

func (c *ConsumeFaultsCmd) Validate() error {
	if c.Duration <= 0 || c.Duration > 30*time.Minute || c.Rate < 1 || c.Kills < 0 || c.Down < 0 {
		return errors.New("--duration must be more than 0 and at most 30m, --rate at least 1; --kills and --down at least 0")
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 5*time.Minute {
		// Outside group.min/max.session.timeout.ms the broker refuses
		// every join, and nothing would be consumed.
		return fmt.Errorf("--session-timeout %s: want 6s to 5m, the range brokers accept by default", c.SessionTimeout)
	}
	return nil
}

func (c *ConsumeFaultsCmd) Run(ctx context.Context) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	rep, err := loadrun.ConsumeFaults(ctx, loadrun.ConsumeFaultConfig{Bin: bin, Duration: c.Duration, Rate: c.Rate, Kills: c.Kills,
		Down: c.Down, SessionTimeout: c.SessionTimeout, Out: os.Stderr})
	if err != nil {
		return err
	}
	rep.Print(os.Stdout)
	if rep.Lost > 0 || rep.Doubled > 0 {
		return fmt.Errorf("%d acknowledged calls lost, %d doubled", rep.Lost, rep.Doubled)
	}
	return nil
}
