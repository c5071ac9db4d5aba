//go:build !amd64

package jsontext

// skipsNothing: skipPlain16 always returns 0 here.
const skipsNothing = true
