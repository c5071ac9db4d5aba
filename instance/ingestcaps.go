package instance

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// IngestCaps cap the parts of an event that have no natural bound; an
// event over a cap is refused with a 400 naming the field.
type IngestCaps struct {
	MaxHeaderValueBytes int `default:"16384" env:"APIMETER_MAX_HEADER_VALUE_BYTES" help:"Longest header value accepted in an event."`
	MaxURIBytes         int `default:"16384" env:"APIMETER_MAX_URI_BYTES" help:"Longest request.uri accepted in an event."`
	MaxMetadataBytes    int `default:"65536" env:"APIMETER_MAX_METADATA_BYTES" help:"Longest metadata (its JSON text) accepted in an event or a profile."`
	// MaxClockSkew bounds how far ahead of this server's clock an event
	// may be dated: one dated years ahead would stay first in every
	// "newest first" list.
	MaxClockSkew time.Duration `default:"24h" env:"APIMETER_MAX_CLOCK_SKEW" help:"How far in the future an event's request.time may be; a later event is refused with a 400."`
}

// privateDataDir creates the data directory readable by its owner only
// (0700), makes the files already in it 0600, and has the files created
// later (DuckDB's write-ahead log and temporary files) made 0600 too: the
// events hold what the APIs were called with.
func privateDataDir(dir string) error {
	restrictNewFiles()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		mode := os.FileMode(0o600)
		if e.IsDir() {
			mode = 0o700
		}
		if err := os.Chmod(filepath.Join(dir, e.Name()), mode); err != nil {
			return fmt.Errorf("chmod %s: %w", e.Name(), err)
		}
	}
	return nil
}
