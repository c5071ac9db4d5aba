package scrub

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadFingerprintKey(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	keys := make([][]byte, 4)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadFingerprintKey(dir)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for i := range keys {
		if len(keys[i]) != fingerprintKeyBytes || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("concurrent first starts got different keys: %x", keys)
		}
	}
	path := filepath.Join(dir, FingerprintKeyFile)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: mode %v, err %v; want 0600", path, st.Mode().Perm(), err)
	}
	again, err := LoadFingerprintKey(dir)
	if err != nil || !bytes.Equal(again, keys[0]) {
		t.Fatalf("second start read %x (%v), want %x", again, err, keys[0])
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data directory holds %d files, want the key alone", len(entries))
	}
	os.Chmod(path, 0o644)
	if _, err := LoadFingerprintKey(dir); err == nil {
		t.Errorf("a key file readable by others was accepted")
	}
}
