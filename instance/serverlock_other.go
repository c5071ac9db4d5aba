//go:build !unix

package instance

// lockDataDir is a no-op where POSIX record locks are not there: the
// store's own lock still keeps a second process out.
func lockDataDir(dir string) (release func(), err error) { return func() {}, nil }
