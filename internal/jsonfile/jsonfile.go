// Package jsonfile reads and replaces the small JSON files of the data
// directory that hold credentials (application ids, API keys, portal tokens): a file that
// does not exist reads as the zero value, and a write replaces the file
// whole, with mode 0600, synced to disk before it takes the old one's
// place, so a crash leaves either the old file or the new one.
package jsonfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Read decodes the JSON file at path into a T; a missing file is the zero T.
func Read[T any](path string) (T, error) {
	var v T
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return v, nil
	}
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("read %s: %w", path, err)
	}
	return v, nil
}

// Write replaces the file at path with v as indented JSON, atomically.
func Write(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := writeSync(tmp, b); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	// O_CREATE's mode does not apply to a file left over by a crash.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
