package enforceflags

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/pci-segment/pci-segment/loader"
)

func parse(t *testing.T, args ...string) Flags {
	t.Helper()
	var f Flags
	p, err := kong.New(&f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return f
}

// The worker runs in /, so every path it is given is absolute, as the
// operator meant it from where enforce was started.
func TestPathsReachTheWorkerAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, parse(t, "-f", "policies/*.yaml", "-f", "/etc/p.yaml", "-f", "-", "--audit-dir", "audit", "--state-dir", "../state",
		"--pin-dir", "pins", "--web-config-file", "web.yml"), "debug")
	for name, got := range map[string]string{"audit dir": cfg.AuditDir, "state dir": cfg.StateDir, "pin dir": cfg.PinDir} {
		if !filepath.IsAbs(got) {
			t.Errorf("%s %q is relative", name, got)
		}
	}
	args := strings.Join(cfg.WorkerArgs, " ")
	for _, want := range []string{"-f " + filepath.Join(wd, "policies/*.yaml"), "-f /etc/p.yaml", "-f " + filepath.Join(wd, "-"), "--audit-dir " + filepath.Join(wd, "audit"),
		"--state-dir " + filepath.Join(filepath.Dir(wd), "state"), "--web-config-file " + filepath.Join(wd, "web.yml"), "--log-level debug"} {
		if !strings.Contains(args, want) {
			t.Errorf("worker args %q lack %q", args, want)
		}
	}
}

func config(t *testing.T, f Flags, logLevel string) loader.Config {
	t.Helper()
	cfg, err := f.Config(logLevel)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// An empty path is refused, naming the flag, rather than taken as the
// directory enforce started in; an empty --web-config-file is none.
func TestEmptyPathsAreRefused(t *testing.T) {
	for _, flag := range []string{"--audit-dir", "--state-dir", "--pin-dir"} {
		args := []string{"-f", "/p", flag, ""}
		if _, err := parse(t, args...).Config("info"); err == nil || !strings.Contains(err.Error(), flag+" is empty") {
			t.Errorf("%q: %v, want it refused naming %s", args, err, flag)
		}
	}
	cfg := config(t, parse(t, "-f", "/p", "--web-config-file", ""), "info")
	if slices.Contains(cfg.WorkerArgs, "--web-config-file") {
		t.Errorf("an empty --web-config-file reached the worker: %q", cfg.WorkerArgs)
	}
}

func TestWorkerIsToldTheSizesAndModes(t *testing.T) {
	cfg := config(t, parse(t, "-f", "/p", "--max-prefixes", "3", "--max-port-entries", "200000", "--max-flows", "1000",
		"--mode", "monitor", "--seccomp", "denylist", "--allow-root", "--syslog-every-record"), "info")
	if cfg.Sizes.Prefixes != 3 || cfg.Sizes.PortEntries != 200000 || cfg.Sizes.Flows != 1000 {
		t.Errorf("loader sizes %+v", cfg.Sizes)
	}
	args := strings.Join(cfg.WorkerArgs, " ")
	for _, want := range []string{"--max-prefixes 3 ", "--max-port-entries 200000 ", "--max-flows 1000", "--mode monitor",
		"--seccomp denylist", "--allow-root", "--syslog-every-record", "-f /p"} {
		if !strings.Contains(args, want) {
			t.Errorf("worker args %q lack %q", args, want)
		}
	}
	// Without a syslog socket, no record goes there either.
	cfg = config(t, parse(t, "-f", "/p", "--syslog", "", "--syslog-every-record"), "info")
	if slices.Contains(cfg.WorkerArgs, "--syslog-every-record") {
		t.Errorf("worker told to copy every record to no syslog: %q", cfg.WorkerArgs)
	}
}
