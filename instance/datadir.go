package instance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ExistingDataDir refuses a data directory that is not there, for the
// commands that only read or change what is in it (apps list, keys list,
// keys revoke): a mistyped --data would otherwise list nothing, as if the
// right directory were empty. A ClickHouse store keeps the catalog in its
// tables, so the directory does not matter then.
func ExistingDataDir(f StoreConfig, dir string) error {
	if f.ClickHouse() {
		return nil
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("data directory %s does not exist: give --data (or APIMETER_DATA) the directory apimeter serve uses", dir)
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	case !st.IsDir():
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	return nil
}
