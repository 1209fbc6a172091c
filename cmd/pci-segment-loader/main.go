// Command pci-segment-loader is the root half of `pci-segment enforce`, a
// binary of its own so that the process that runs as root links no YAML
// parser, HTTP server, metrics or audit code (`go version -m` lists all it
// holds; a test keeps it so). `pci-segment enforce` starts it with the same
// command line; the unit runs it directly. It starts the worker from
// --worker-binary, the full pci-segment, opened once at start so that every
// worker runs the file it found then, whatever replaces the path later.
package main

import (
	"os"
	"runtime"

	"github.com/alecthomas/kong"
	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/cmd/internal/buildinfo"
	"github.com/pci-segment/pci-segment/cmd/internal/enforceflags"
	"github.com/pci-segment/pci-segment/loader"
)

// The main goroutine keeps the main thread, so that the thread the loader
// reduces to start the worker is never the one /proc/PID/status shows.
func init() { runtime.LockOSThread() }

type cli struct {
	LogLevel     string             `help:"Operator log level: trace, debug, info, warn, error." default:"info" enum:"trace,debug,info,warn,error"`
	Version      kong.VersionFlag   `help:"Print the version and exit."`
	WorkerBinary string             `required:"" help:"The pci-segment binary the worker runs from, root's and writable by root alone (pci-segment enforce passes its own)."`
	Enforce      enforceflags.Flags `cmd:"" help:"Load the datapath, start the worker and enforce the policies (root)."`
}

func main() {
	// ps -C pci-segment lists the loader and the worker alike.
	_ = os.WriteFile("/proc/self/comm", []byte("pci-segment"), 0)
	var c cli
	kong.Parse(&c, kong.Name("pci-segment-loader"), kong.Description("The root half of pci-segment enforce."),
		kong.Vars{"version": buildinfo.Version("pci-segment-loader")},
		kong.Exit(func(code int) {
			if code != 0 {
				code = 2 // kong's usage errors, as pci-segment's
			}
			os.Exit(code)
		}))
	log := hclog.New(&hclog.LoggerOptions{Name: "pci-segment", Level: hclog.LevelFromString(c.LogLevel), Output: os.Stderr})
	cfg, err := c.Enforce.Config(c.LogLevel)
	if err == nil {
		cfg.WorkerBinary = c.WorkerBinary
		err = loader.Enforce(cfg, log)
	}
	if err != nil {
		log.Error(err.Error())
		os.Exit(1)
	}
}
