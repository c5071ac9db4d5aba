package bench

import (
	"errors"
	"fmt"
	"math"

	"github.com/apimeter/apimeter/instance"
)

func (c *IngestCmd) Validate() error {
	var errs []error
	if c.DupRate < 0 || c.DupRate > 1 || math.IsNaN(c.DupRate) {
		errs = append(errs, fmt.Errorf("--dup-rate %v: want a share from 0 to 1", c.DupRate))
	}
	return errors.Join(append(errs,
		c.StoreConfig.Validate(),
		instance.AtLeast("--events", c.Events, 1),
		instance.AtLeast("--clients", c.Clients, 1),
		instance.AtLeast("--batch", c.Batch, 1),
		instance.PositiveDuration("--timeout", c.Timeout),
	)...)
}

func (c *CaptureCmd) Validate() error {
	var errs []error
	if !(c.SampleRate > 0 && c.SampleRate <= 1) {
		errs = append(errs, fmt.Errorf("--sample-rate %v: want a share above 0 and at most 1", c.SampleRate))
	}
	if c.CPUProfile != "" && c.ProfileDir != "" {
		errs = append(errs, errors.New("--cpu-profile and --profile-dir exclude each other"))
	}
	return errors.Join(append(errs,
		instance.AtLeast("--rounds", c.Rounds, 1),
		instance.PositiveDuration("--duration", c.Duration),
		instance.AtLeast("--clients", c.Clients, 1),
		instance.AtLeast("--body-bytes", c.BodyBytes, 0),
		instance.AtLeast("--batch-size", c.BatchSize, 0),
		instance.AtLeast("--queue-size", c.QueueSize, 0),
	)...)
}
