package apps

import "strings"

// ShortID is what logs print of an application id. The id is a write
// credential (anyone who has it can send events to its org and env), and
// logs are read and kept by more people than the data directory: they get
// the first six characters of its random part, enough to tell apps apart
// and to find the app in `apimeter apps list`, never the whole id. The part
// before the dot of apimeter's and Moesif's ids only names the org and env.
func ShortID(id string) string {
	if i := strings.LastIndexByte(id, '.'); i >= 0 {
		id = id[i+1:]
	}
	if len(id) <= 12 {
		// Too short to hide much of it: show none of it.
		return "…"
	}
	return id[:6] + "…"
}
