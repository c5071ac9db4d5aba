package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/apimeter/apimeter/internal/loadrun"
)

type FaultsCmd struct {
	Duration    time.Duration `default:"150s" help:"Length of the load phase; the faults are spread over it."`
	Senders     int           `default:"6" help:"Good senders, each retrying its batches until acknowledged."`
	Batch       int           `default:"100" help:"Events per good batch."`
	Kills       int           `default:"3" help:"Times the server is SIGKILLed and restarted."`
	NoRedis     bool          `help:"Keep the identity embedded instead of on a redis-server child stopped for --redis-stop."`
	RedisStop   time.Duration `default:"10s" help:"How long Redis is stopped."`
	SlowClients int           `default:"300" help:"Connections of the slow-client flood (one byte every two seconds)."`
	NoPoison    bool          `help:"Leave the poison sender out."`
	// The scale-out store.
	ClickHouse     bool          `name:"clickhouse" help:"Store on a clickhouse-server child (Debian's clickhouse-server package) instead of the embedded DuckDB file; Redis is then on."`
	ClickHouseDown time.Duration `name:"clickhouse-down" default:"10s" help:"With --clickhouse: clickhouse-server is SIGKILLed mid-load and restarted on the same data this long after (0: not killed)."`
}

func (c *FaultsCmd) Validate() error {
	if c.Duration <= 0 || c.Duration > 30*time.Minute {
		return errors.New("--duration: want more than 0 and at most 30m")
	}
	if c.Senders < 1 || c.Batch < 1 || c.Kills < 0 || c.SlowClients < 0 || c.RedisStop < 0 || c.ClickHouseDown < 0 {
		return errors.New("--senders and --batch must be at least 1; --kills, --slow-clients, --redis-stop and --clickhouse-down at least 0")
	}
	if c.ClickHouse && c.NoRedis {
		return errors.New("--clickhouse needs Redis (a shared store keeps its alias table and counters there): leave out --no-redis")
	}
	return nil
}

func (c *FaultsCmd) Run(ctx context.Context) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	redis := !c.NoRedis
	if _, err := exec.LookPath("redis-server"); c.ClickHouse && err != nil {
		return errors.New("--clickhouse needs redis-server on the PATH")
	}
	if _, err := exec.LookPath("redis-server"); redis && err != nil {
		fmt.Fprintln(os.Stderr, "redis-server is not on the PATH: running without Redis (install it, or pass --no-redis to silence this)")
		redis = false
	}
	rep, err := loadrun.Faults(ctx, loadrun.FaultConfig{
		Bin: bin, Duration: c.Duration, Senders: c.Senders, Batch: c.Batch, Kills: c.Kills,
		Redis: redis, RedisStop: c.RedisStop, SlowClients: c.SlowClients, Poison: !c.NoPoison,
		ClickHouse: c.ClickHouse, ClickHouseDown: c.ClickHouseDown, Out: os.Stderr,
	})
	if err != nil {
		return err
	}
	rep.Print(os.Stdout)
	if rep.Missing > 0 || rep.Doubled > 0 || rep.GoodRefused > 0 {
		return fmt.Errorf("%d acknowledged events missing, %d doubled, %d good batches refused", rep.Missing, rep.Doubled, rep.GoodRefused)
	}
	return nil
}

type MemoryCmd struct {
	Events    int      `default:"1000000" help:"Events to store."`
	Senders   int      `default:"4" help:"Concurrent senders."`
	Batch     int      `default:"500" help:"Events per batch."`
	ServeFlag []string `placeholder:"FLAG" help:"A flag for the serve child process, such as --serve-flag=--dedupe-memory=16MB (repeatable)."`
}

func (c *MemoryCmd) Validate() error {
	if c.Events < 1 || c.Senders < 1 || c.Batch < 1 {
		return errors.New("--events, --senders and --batch must be at least 1")
	}
	return nil
}

func (c *MemoryCmd) Run(ctx context.Context) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	rep, err := loadrun.Memory(ctx, loadrun.MemoryConfig{Bin: bin, Events: c.Events, Senders: c.Senders, Batch: c.Batch, ServeArgs: c.ServeFlag, Out: os.Stderr})
	if err != nil {
		return err
	}
	rep.Print(os.Stdout)
	return nil
}
