//go:build !unix

package instance

// restrictNewFiles does nothing where there is no umask.
func restrictNewFiles() {}
