package bench

import (
	"context"
	"errors"
	"os"

	"github.com/apimeter/apimeter/internal/loadrun"
)

type FreshnessCmd struct {
	Rate      int      `default:"5000" help:"Background events per second."`
	Batch     int      `default:"100" help:"Events per background batch."`
	Trials    int      `default:"200" help:"Single calls posted and looked for in the Metrics API."`
	ServeFlag []string `placeholder:"FLAG" help:"A flag for the serve child process (repeatable)."`
}

func (c *FreshnessCmd) Validate() error {
	if c.Rate < 1 || c.Batch < 1 || c.Trials < 1 {
		return errors.New("--rate, --batch and --trials must be at least 1")
	}
	return nil
}

// Run measures how fresh answers are under background ingest: a serve
// child process takes Rate events/s while single calls are posted, each
// timed to its acknowledgement and to the first Metrics API answer that
// counts it.
func (c *FreshnessCmd) Run(ctx context.Context) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	rep, err := loadrun.Freshness(ctx, loadrun.FreshnessConfig{Bin: bin, Rate: c.Rate, Batch: c.Batch, Trials: c.Trials, ServeArgs: c.ServeFlag, Out: os.Stderr})
	if err != nil {
		return err
	}
	rep.Print(os.Stdout)
	return nil
}
