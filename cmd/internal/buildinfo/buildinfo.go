// Package buildinfo names the build of a binary for --version and the
// compliance report: the module version and VCS revision Go records.
package buildinfo

import "runtime/debug"

// Version is name, the module version, the VCS revision (marked when the
// tree was modified) and the Go version.
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (unknown build)"
	}
	v := name + " " + bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	return v + " " + bi.GoVersion
}
