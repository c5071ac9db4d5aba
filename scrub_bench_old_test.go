package apimeter_test

import "github.com/apimeter/apimeter"

func benchScrubber() *apimeter.Scrubber { return apimeter.NewScrubber(nil, nil, -1) }
