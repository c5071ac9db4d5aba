package apimeter_test

import "github.com/apimeter/apimeter"

// benchScrubber is the collector's Scrubber: keyed, default lists.
func benchScrubber() *apimeter.Scrubber {
	return apimeter.NewScrubberWith(apimeter.ScrubConfig{BodyCap: -1, Key: []byte("0123456789abcdef0123456789abcdef")})
}
