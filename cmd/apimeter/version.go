package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// versionCmd is `apimeter version`, the same as --version.
type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println(version())
	return nil
}

// version is what --version prints: the module version and the VCS
// commit the binary was built from, as the Go toolchain recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "apimeter (no build information)"
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var parts []string
	if rev != "" {
		c := "commit " + rev
		if at != "" {
			c += " of " + at
		}
		if modified {
			c += " with uncommitted changes"
		}
		parts = append(parts, c)
	}
	parts = append(parts, bi.GoVersion)
	return fmt.Sprintf("apimeter %s (%s)", v, strings.Join(parts, ", "))
}
