//go:build unix

package instance

import "syscall"

// restrictNewFiles makes every file the process creates from now on
// readable and writable by its owner only, whatever mode the creator
// (DuckDB, which uses 0644) asks for.
func restrictNewFiles() { syscall.Umask(0o077) }
