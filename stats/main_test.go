package stats

import (
	"os"
	"testing"

	"github.com/apimeter/apimeter/store/clickhouse/chtest"
)

// TestMain shares one clickhouse-server among the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	os.Exit(code)
}
