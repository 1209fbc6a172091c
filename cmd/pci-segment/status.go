package main

import (
	"fmt"
	"io"

	"github.com/pci-segment/pci-segment/status"
)

type statusCmd struct {
	PinDir   string `default:"/sys/fs/bpf/pci-segment" help:"bpffs directory of the instance to show (enforce's --pin-dir)."`
	StateDir string `help:"State directory of that instance (enforce's --state-dir), where the worker reports its Landlock rules. Default: the running instance's, else /var/lib/pci-segment."`
	Output   string `short:"o" enum:"text,json" default:"text" help:"Output format: text or json."`
}

// Help is the detail `status --help` shows under the one-line summary.
func (c *statusCmd) Help() string {
	return `For the loader and the worker: pid, user and groups, the four uids and gids, capabilities by name in each of the five sets, NoNewPrivs, seccomp mode and filter count, whether every thread agrees, MAC label, Landlock (as the worker reports it) and the BPF maps, programs and links each holds. Then the development overrides in effect, the policy generation and set hash in force, the pinned links per interface and direction with any program attached ahead of ours, the pins, the counters, and findings worth an auditor's attention.

The full view needs root. Run as another user, status shows what it can read and lists the rest under "Not available" (JSON: "unavailable") with the reason; that is not an error.

Exit status: 0 when the status was printed, 2 on a usage error or when it could not be written.`
}

// run gathers and prints the status.
func (c *statusCmd) run(stdout, stderr io.Writer) int {
	s := status.Gather(status.Options{PinDir: c.PinDir, StateDir: c.StateDir})
	var err error
	if c.Output == "json" {
		err = s.WriteJSON(stdout)
	} else {
		err = s.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "pci-segment status:", err)
		return 2
	}
	return 0
}
