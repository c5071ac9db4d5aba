package instance

import (
	"errors"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/kafka"
)

// Each flags struct has a Validate method, which kong calls after parsing
// and before Run, so that a value with no sensible meaning stops the
// command at start with a message naming the flag, instead of being
// replaced by a default or failing every request later. A struct that
// embeds another calls the embedded one's Validate (Go promotes only one
// method of a name, so kong would not find both).

func (f *Config) Validate() error {
	return errors.Join(
		AtLeast("--body-cap", f.BodyCap, 0),
		AtLeast("--max-body-bytes", f.MaxBodyBytes, 1),
		AtLeast("--max-batch-events", f.MaxBatchEvents, 1),
		PositiveDuration("--dedupe-horizon", f.DedupeHorizon),
		PositiveDuration("--max-clock-skew", f.MaxClockSkew),
		nonZeroDuration("--daily-interval", f.DailyInterval, "a negative interval turns the rollup pass off"),
		AtLeast("--retention", f.Retention, 0),
		f.StoreConfig.Validate(),
		f.StatsConfig.Validate(),
		f.IdentityConfig.Validate(),
		f.Observability.Validate(),
	)
}

func (f *Observability) Validate() error {
	_, _, err := f.memorySizes()
	return err
}

func (f *StatsConfig) Validate() error {
	if f.StatsSessionQuota < -1 {
		return fmt.Errorf("--stats-session-quota %d: want calls per minute (at least 1), or 0 or -1 for no quota", f.StatsSessionQuota)
	}
	if f.StatsQuota < -1 {
		return fmt.Errorf("--stats-quota %d: want calls per minute (at least 1), or 0 or -1 for no quota", f.StatsQuota)
	}
	return nil
}

func (f *IdentityConfig) Validate() error {
	var errs []error
	if f.BillingDay < 1 || f.BillingDay > 31 {
		errs = append(errs, fmt.Errorf("--billing-day %d: want a day of the month, 1 to 31", f.BillingDay))
	}
	if f.BillingTZ != "" {
		if _, err := time.LoadLocation(f.BillingTZ); err != nil {
			errs = append(errs, fmt.Errorf("--billing-tz %q: want an IANA time zone name such as Europe/Berlin", f.BillingTZ))
		}
	}
	errs = append(errs, AtLeast("--jwt-leeway", f.JWTLeeway, 0))
	return errors.Join(errs...)
}

// AtLeast refuses a number below min, naming the flag.
func AtLeast[N int | int64 | time.Duration](flag string, v, min N) error {
	if v < min {
		return fmt.Errorf("%s %v: must be at least %v", flag, v, min)
	}
	return nil
}

func PositiveDuration(flag string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s %v: must be a positive duration such as 90s or 1h", flag, d)
	}
	return nil
}

func nonZeroDuration(flag string, d time.Duration, negative string) error {
	if d == 0 {
		return fmt.Errorf("%s 0: must be a positive duration such as 5m (%s)", flag, negative)
	}
	return nil
}

// validate checks what kafka.Conn would refuse only at the first
// connection; prefix is how the command spells its flags ("--" or
// "--kafka-"). It is not named Validate: a command embeds it beside
// Config, and two promoted Validate methods would hide both.
func (f *KafkaConn) Check(prefix string) error {
	if !f.Enabled() {
		return nil
	}
	var errs []error
	if f.SASLPassword != "" && f.SASLUser == "" && f.EventHubs == "" {
		errs = append(errs, fmt.Errorf("%ssasl-password needs %ssasl-user (%s for Event Hubs)", prefix, prefix, kafka.EventHubsUser))
	}
	if f.EventHubs != "" {
		if _, err := kafka.EventHubs(f.EventHubs); err != nil {
			errs = append(errs, fmt.Errorf("%sevent-hubs: %w", prefix, err))
		}
	}
	return errors.Join(errs...)
}
