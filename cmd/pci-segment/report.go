package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pci-segment/pci-segment/cmd/internal/buildinfo"
	"github.com/pci-segment/pci-segment/report"
)

type reportCmd struct {
	Files    []string `short:"f" name:"file" required:"" help:"Policy files, directories or glob patterns (repeatable): the set the report is about."`
	Output   string   `short:"o" required:"" help:"File to write; .html or .json (or --format)."`
	Format   string   `enum:",html,json" default:"" help:"html or json; default: from the -o extension."`
	Labels   string   `help:"This host's labels k=v,..., as enforce has them: which policies apply, and the allowances."`
	PinDir   string   `default:"/sys/fs/bpf/pci-segment" help:"The enforcing instance's --pin-dir, for the live state."`
	StateDir string   `help:"Its --state-dir (Landlock report, audit chain state). Default: the running instance's, else /var/lib/pci-segment."`
	AuditDir string   `help:"Its --audit-dir, for the audit log's span and verification. Default: the running instance's, else /var/log/pci-segment."`
	Key      string   `help:"The audit chains' first keys (a file, or the loader's --key-dir, /var/lib/pci-segment-keys): MACs are checked only with them."`
}

// Help is the detail `report --help` shows.
func (c *reportCmd) Help() string {
	return `Writes the evidence an assessor files: host, time, version and the policy set's hash; each policy with its PCI-DSS requirements and every validation finding; the effective allowances per direction, checked with the reference evaluator; the live state when enforcement runs (mode, links, the generation and set in force and whether they equal the files, counters, connection tracking, events lost); the policies that let no flow in since the set in force was applied (Req 1.2.7); the development overrides in effect (Req 2.2.4); both processes' privileges, as status shows them; the audit log's span, records and verification. A section without data says why. Run as root for the live state.

Exit status: 0 when the report was written, 2 on a usage error or when it could not be.`
}

func (c *reportCmd) run(stderr io.Writer) int {
	format := c.Format
	if format == "" {
		switch strings.ToLower(filepath.Ext(c.Output)) {
		case ".html", ".htm":
			format = "html"
		case ".json":
			format = "json"
		default:
			fmt.Fprintf(stderr, "pci-segment report: -o %s: name a .html or .json file, or give --format html|json\n", c.Output)
			return 2
		}
	}
	r := report.Build(report.Options{Files: c.Files, Labels: c.Labels, PinDir: c.PinDir, StateDir: c.StateDir,
		AuditDir: c.AuditDir, Key: c.Key, Version: buildinfo.Version("pci-segment")})
	var buf bytes.Buffer
	var err error
	if format == "json" {
		err = r.WriteJSON(&buf)
	} else {
		err = r.WriteHTML(&buf)
	}
	if err == nil {
		err = os.WriteFile(c.Output, buf.Bytes(), 0o644)
	}
	if err != nil {
		fmt.Fprintln(stderr, "pci-segment report:", err)
		return 2
	}
	return 0
}
