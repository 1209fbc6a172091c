// Command pci-segment enforces PCI-DSS network segmentation on a Linux host
// with eBPF. See the README for the commands.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/alecthomas/kong"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/cmd/internal/buildinfo"
	"github.com/pci-segment/pci-segment/cmd/internal/enforceflags"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/worker"
)

// The main goroutine keeps the main thread, so that the thread the loader
// reduces to spawn the worker is never the one /proc/PID/status shows.
func init() { runtime.LockOSThread() }

type cli struct {
	LogLevel string           `help:"Operator log level: trace, debug, info, warn, error." default:"info" enum:"trace,debug,info,warn,error"`
	Version  kong.VersionFlag `help:"Print the version and exit."`

	Validate validateCmd        `cmd:"" help:"Check policy files: schema and PCI checks. Exit 0 valid, 1 invalid, 2 usage."`
	Check    checkCmd           `cmd:"" help:"Explain the verdict for one packet. Exit 0 allow, 1 deny, 2 usage or error, 3 kernel and files disagree (--live)."`
	Enforce  enforceflags.Flags `cmd:"" help:"Load the datapath, start the worker and enforce the policies (root; runs pci-segment-loader)."`
	Detach   detachCmd          `cmd:"" help:"Remove every link and pin of pci-segment (root)."`
	Status   statusCmd          `cmd:"" help:"Show the running privilege split, pins, links and policy in force (full view as root)."`
	Audit    auditCmd           `cmd:"" help:"Work with the audit trail."`
	Report   reportCmd          `cmd:"" help:"Write the compliance evidence for an assessor: policies, allowances, live state, privileges, audit log (HTML or JSON)."`
	Worker   workerCmd          `cmd:"" hidden:"" help:"The unprivileged worker; started by enforce only."`
}

type validateCmd struct {
	Files  []string `short:"f" name:"file" required:"" help:"Policy files, directories or glob patterns (repeatable)."`
	Labels string   `help:"Host labels k=v,... to check which policies apply."`
	Output string   `short:"o" default:"text" enum:"text,json" help:"Output format: text or json."`
}

type workerCmd struct {
	Identity          string   `required:"" help:"uid:gid:groups the loader started this worker with."`
	Files             []string `short:"f" name:"file"`
	Labels            string
	AuditDir          string
	StateDir          string
	MetricsAddr       string
	AllowRoot         bool
	Mode              string `default:"enforce" enum:"enforce,monitor"`
	SyslogEveryRecord bool
	WebConfigFile     string
	Seccomp           string `default:"allowlist" enum:"allowlist,denylist"`
	MaxPrefixes       int
	MaxPortEntries    int
	MaxFlows          int
}

func logger(name, level string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.LevelFromString(level), Output: os.Stderr,
		// The worker's lines reach the operator through the loader,
		// which stamps each with its own time.
		DisableTime: name == workerLogName})
}

const workerLogName = "pci-segment.worker"

func main() {
	var c cli
	parser, err := kong.New(&c, kong.Name("pci-segment"),
		kong.Description("PCI-DSS network segmentation enforced with eBPF."),
		kong.Vars{"version": buildinfo.Version("pci-segment")},
		kong.Exit(func(code int) {
			// kong exits 80 on usage errors; the documented code is 2.
			if code != 0 {
				code = 2
			}
			os.Exit(code)
		}))
	if err != nil {
		panic(err)
	}
	ctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		parser.Errorf("%s", err)
		fmt.Fprintln(os.Stderr, "run `pci-segment --help` for usage")
		os.Exit(2)
	}
	switch ctx.Command() {
	case "validate":
		os.Exit(policy.RunValidate(os.Stdout, c.Validate.Files, c.Validate.Labels, c.Validate.Output))
	case "check":
		os.Exit(c.Check.run(os.Stdout, os.Stderr))
	case "enforce":
		exit(logger("pci-segment", c.LogLevel), execLoader())
	case "detach":
		log := logger("pci-segment", c.LogLevel)
		exit(log, c.Detach.run(log))
	case "audit verify", "audit verify <dir>":
		os.Exit(c.Audit.Verify.run(os.Stdout, os.Stderr))
	case "status":
		os.Exit(c.Status.run(os.Stdout, os.Stderr))
	case "report":
		os.Exit(c.Report.run(os.Stderr))
	case "worker":
		w := c.Worker
		log := logger(workerLogName, c.LogLevel)
		id, err := privilege.ParseIdentity(w.Identity)
		if err != nil {
			exit(log, fmt.Errorf("worker --identity (set by the loader; start the worker with `pci-segment enforce`): %w", err))
		}
		exit(log, worker.Run(worker.Config{Identity: id,
			Policies: w.Files, Labels: w.Labels, AuditDir: w.AuditDir, StateDir: w.StateDir,
			MetricsAddr: w.MetricsAddr, AllowRoot: w.AllowRoot, Seccomp: w.Seccomp, Monitor: w.Mode == "monitor", SyslogRecords: w.SyslogEveryRecord, WebConfig: w.WebConfigFile,
			Sizes: bpf.Sizes{Prefixes: w.MaxPrefixes, PortEntries: w.MaxPortEntries, Flows: w.MaxFlows},
		}, log))
	default:
		parser.Errorf("unknown command %q", ctx.Command())
		os.Exit(2)
	}
}

// execLoader replaces this process with pci-segment-loader, beside this
// binary, the root half of enforce, which links none of this binary's
// YAML, HTTP, metrics or audit code: the same command line, and this
// binary, open, for the worker to run from.
func execLoader() error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("open this binary for the worker: %w", err)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD, 3) // a copy the exec keeps
	if err != nil {
		return fmt.Errorf("pass this binary to the loader: %w", err)
	}
	// First, before anything the operator typed, a "--" included.
	args := append([]string{"pci-segment-loader", fmt.Sprintf("--worker-binary=/proc/self/fd/%d", fd)}, os.Args[1:]...)
	err = unix.Exec(self+"-loader", args, os.Environ())
	return fmt.Errorf("start the loader %s-loader, which make build and make install put beside pci-segment: %w", self, err)
}

func exit(log hclog.Logger, err error) {
	if err == nil {
		os.Exit(0)
	}
	var perr policy.Errors
	if errors.As(err, &perr) {
		log.Error("policy set rejected")
		fmt.Fprintln(os.Stderr, err)
	} else {
		log.Error(err.Error())
	}
	os.Exit(1)
}
