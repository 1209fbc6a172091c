// Package enforceflags is the enforce command line, which both binaries
// parse: pci-segment enforce hands it on to pci-segment-loader unchanged.
package enforceflags

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/loader"
)

// Flags are enforce's flags, as kong reads them.
type Flags struct {
	Files             []string `short:"f" name:"file" required:"" help:"Policy files, directories or glob patterns (repeatable); read by the worker as the service account."`
	Interface         []string `help:"Interface name or glob to enforce on (repeatable). Default: the interfaces carrying default routes."`
	Labels            string   `help:"Labels of this host, k=v,..."`
	PinDir            string   `default:"/sys/fs/bpf/pci-segment" help:"bpffs directory for pins; the layout version is a subdirectory."`
	AuditDir          string   `default:"/var/log/pci-segment" help:"Directory of the audit log, owned by the service account."`
	StateDir          string   `default:"/var/lib/pci-segment" help:"State directory, the service account's."`
	KeyDir            string   `default:"/var/lib/pci-segment-keys" help:"Root-only directory where the loader keeps the auditor's copy of each audit chain's first key (audit verify --key); every directory above it must be root's alone (or sticky, as /tmp)."`
	MetricsAddr       string   `default:"127.0.0.1:9720" help:"Address the worker serves /metrics on."`
	AllowRoot         bool     `help:"Development only: let the worker keep uid 0 (it still has no capabilities)."`
	Mode              string   `default:"enforce" enum:"enforce,monitor" help:"enforce drops what the policies deny; monitor, for rollout, lets it pass, counted and audited as would-be denials (the host is then not segmented)."`
	Syslog            string   `default:"/dev/log" help:"Syslog socket the worker copies each audit epoch's seal to, the anchor that shows a truncated log; empty for none."`
	SyslogEveryRecord bool     `help:"Copy every audit record to --syslog, not only the epochs' seals, so that a central collector has them promptly (PCI-DSS Req 10.3.3)."`
	WebConfigFile     string   `help:"Prometheus exporter-toolkit web configuration (TLS, basic authentication) for the metrics server, read by the worker; the certificates it names must sit in its directory."`
	Replace           bool     `help:"Take over from a running enforce on the same --pin-dir, or from pins of another layout (an upgrade), swapping programs in place on the attached links."`
	Seccomp           string   `default:"allowlist" enum:"allowlist,denylist" help:"The worker's seccomp filter: allowlist (everything else kills it) or denylist (the hardening guide's: risky calls fail with EPERM)."`
	// Map capacities, fixed for the life of the loader; the defaults are
	// bpf.DefaultSizes.
	MaxPrefixes    int `default:"200000" help:"Address prefixes, IPv4 and IPv6 together, that one policy set may compile to; sizes the address maps."`
	MaxPortEntries int `default:"1000000" help:"Port allowances that one policy set may compile to; sizes the port map."`
	MaxFlows       int `default:"32768" help:"Connections tracked at once; sizes connection tracking."`
}

// Config is the loader's configuration from f, with the operator log
// level. Paths are made absolute first: the worker runs in /.
func (f Flags) Config(logLevel string) (loader.Config, error) {
	type path struct {
		flag string
		p    *string
	}
	paths := []path{{"--pin-dir", &f.PinDir}, {"--audit-dir", &f.AuditDir}, {"--state-dir", &f.StateDir}, {"--key-dir", &f.KeyDir}}
	if f.WebConfigFile != "" { // none: plain HTTP
		paths = append(paths, path{"--web-config-file", &f.WebConfigFile})
	}
	f.Files = slices.Clone(f.Files)
	for i := range f.Files {
		paths = append(paths, path{"--file", &f.Files[i]})
	}
	for _, p := range paths {
		if *p.p == "" {
			return loader.Config{}, fmt.Errorf("%s is empty: give a path", p.flag)
		}
		abs, err := filepath.Abs(*p.p)
		if err != nil {
			return loader.Config{}, fmt.Errorf("resolve %s %q: %w", p.flag, *p.p, err)
		}
		*p.p = abs
	}
	return loader.Config{
		Interfaces: f.Interface, PinDir: f.PinDir, AuditDir: f.AuditDir, StateDir: f.StateDir, KeyDir: f.KeyDir,
		AllowRoot: f.AllowRoot, Replace: f.Replace, Syslog: f.Syslog,
		Sizes:      bpf.Sizes{Prefixes: f.MaxPrefixes, PortEntries: f.MaxPortEntries, Flows: f.MaxFlows},
		WorkerArgs: f.workerArgs(logLevel),
	}, nil
}

// workerArgs is the worker's command line but for --identity, which the
// loader adds: what it needs to find its input and output. The loader
// passes it on without reading it.
func (f Flags) workerArgs(logLevel string) []string {
	args := []string{"--labels", f.Labels, "--audit-dir", f.AuditDir, "--state-dir", f.StateDir,
		"--metrics-addr", f.MetricsAddr, "--log-level", logLevel, "--mode", f.Mode, "--seccomp", f.Seccomp,
		"--max-prefixes", strconv.Itoa(f.MaxPrefixes), "--max-port-entries", strconv.Itoa(f.MaxPortEntries),
		"--max-flows", strconv.Itoa(f.MaxFlows)}
	if f.AllowRoot {
		args = append(args, "--allow-root")
	}
	if f.WebConfigFile != "" {
		args = append(args, "--web-config-file", f.WebConfigFile)
	}
	if f.SyslogEveryRecord && f.Syslog != "" {
		args = append(args, "--syslog-every-record")
	}
	for _, p := range f.Files {
		args = append(args, "-f", p)
	}
	return args
}
