package scrub_test

import "github.com/apimeter/apimeter/scrub"

// benchScrubber is the collector's Scrubber: keyed, default lists.
func benchScrubber() *scrub.Scrubber {
	return scrub.NewWith(scrub.Config{BodyCap: -1, Key: []byte("0123456789abcdef0123456789abcdef")})
}
