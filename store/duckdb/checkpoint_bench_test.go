package duckdb

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// BenchmarkCommitDuringCheckpoint measures what a checkpoint does to the
// commits around it: 500-row appender flushes (the group commit's size
// under a few thousand events/s), first with DuckDB's automatic checkpoint
// at the store's threshold (inside the commit that crosses it), then with
// automatic checkpoints off and a CHECKPOINT from another connection every
// second. One op is one flush; it reports the flushes' p99 and maximum.
//
//	go test ./store/duckdb -run XXX -bench CommitDuringCheckpoint -benchtime 600x
func BenchmarkCommitDuringCheckpoint(b *testing.B) {
	for _, mode := range []string{"automatic", "concurrent"} {
		b.Run(mode, func(b *testing.B) {
			c, err := duckdb.NewConnector(filepath.Join(b.TempDir(), "x.duckdb"), nil)
			if err != nil {
				b.Fatal(err)
			}
			db := sql.OpenDB(c)
			defer db.Close()
			if _, err := db.Exec(Settings + ";" + Schema); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			checkpointed := make(chan struct{})
			if mode == "concurrent" {
				if _, err := db.Exec("SET checkpoint_threshold = '100GB'"); err != nil {
					b.Fatal(err)
				}
				go func() {
					defer close(checkpointed)
					for {
						select {
						case <-stop:
							return
						case <-time.After(time.Second):
						}
						if _, err := db.Exec("CHECKPOINT"); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			} else {
				close(checkpointed)
			}
			conn, err := c.Connect(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			app, err := duckdb.NewAppenderFromConn(conn, "", "events")
			if err != nil {
				b.Fatal(err)
			}
			defer app.Close()
			doc := `{"direction":"Incoming","req":{"headers":{"content-type":"application/json"}},"resp":{"headers":{}}}`
			now := time.Now().UTC()
			lat := make([]time.Duration, 0, b.N)
			n := 0
			b.ResetTimer()
			for range b.N {
				for range 500 {
					n++
					s := strconv.Itoa(n)
					if err := app.AppendRow("id"+s, "o", "e", now, now, "api", "GET", "https://x/"+s, "/x/"+s, "/x/{id}", int32(200), 12.0, nil, nil, nil,
						"u"+strconv.Itoa(n%5000), "c", "k", "1.2.3.4", "ua", "", int64(1), doc+s); err != nil {
						b.Fatal(err)
					}
				}
				t := time.Now()
				if err := app.Flush(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
			}
			b.StopTimer()
			close(stop)
			<-checkpointed
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
		})
	}
}
