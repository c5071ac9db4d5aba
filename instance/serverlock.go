//go:build unix

package instance

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// PIDFile is the file in the data directory that the serving process
// holds a lock on and writes its PID to.
const PIDFile = "apimeter.pid"

// lockDataDir takes the data directory for this process, or says which
// process has it: "another apimeter (PID n) is serving DIR", where DuckDB
// would say that it could not set a lock on events.duckdb. The lock is a
// POSIX record lock (fcntl), the kind DuckDB takes on its file: the
// kernel drops it when the process ends, however it ends, so a stale file
// never blocks a start; and it is per process, like DuckDB's. release
// drops it; the file stays, since removing it would race with the next
// process that locks it.
func lockDataDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, PIDFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		holder := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0}
		pid := "unknown"
		if syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &holder) == nil && holder.Type != syscall.F_UNLCK {
			pid = strconv.Itoa(int(holder.Pid))
		}
		f.Close()
		if err == syscall.EAGAIN || err == syscall.EACCES {
			return nil, fmt.Errorf("another apimeter (PID %s) is serving %s; stop it, or give this one another --data", pid, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
