package scrub

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FingerprintKeyFile is the file in the data directory that holds the
// installation's fingerprint key, hex-encoded, readable by its owner only.
const FingerprintKeyFile = "fingerprint.key"

// fingerprintKeyBytes is the size of a fingerprint key.
const fingerprintKeyBytes = 32

// LoadFingerprintKey returns the installation's fingerprint key from
// dir/fingerprint.key, creating it (32 random bytes, mode 0600) at first
// start. Two processes starting at once agree on one key: the file is
// written aside and linked into place, which fails if it is already
// there. A key file that others may read or write is refused: stored
// fingerprints are only as safe as the key.
func LoadFingerprintKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, FingerprintKeyFile)
	key, err := readFingerprintKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	k := make([]byte, fingerprintKeyBytes)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, FingerprintKeyFile+".*")
	if err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	if _, err := tmp.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return readFingerprintKey(path)
}

func readFingerprintKey(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("fingerprint key %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) < 16 {
		return nil, fmt.Errorf("fingerprint key %s: not a hex key of at least 16 bytes", path)
	}
	return k, nil
}
