package policy

import (
	"fmt"
	"io"
)

// Exit codes of `pci-segment validate`. Usage errors (2) are the command
// line's to report, except a malformed --labels, which RunValidate reads.
const (
	ExitValid   = 0
	ExitInvalid = 1
	ExitUsage   = 2
)

// Result is what `validate` reports.
type Result struct {
	// Set is the loaded set; nil when Errors is not empty.
	Set      *Set
	Errors   []*Finding
	Warnings []*Finding
}

// Valid reports whether the set has no errors; warnings do not count.
func (r *Result) Valid() bool { return len(r.Errors) == 0 }

// ExitCode is ExitValid or ExitInvalid.
func (r *Result) ExitCode() int {
	if r.Valid() {
		return ExitValid
	}
	return ExitInvalid
}

// Validate loads the set at paths and checks it for a host with these
// labels. With labels nil no host is assumed and only the files are
// checked; otherwise HostWarnings are added.
func Validate(paths []string, hostLabels map[string]string) *Result {
	set, errs := load(paths)
	r := &Result{Errors: errs}
	if set != nil {
		r.Warnings = append(r.Warnings, set.Warnings...)
	}
	if len(errs) > 0 {
		return r
	}
	r.Set = set
	if hostLabels != nil {
		r.Warnings = append(r.Warnings, set.HostWarnings(hostLabels)...)
	}
	return r
}

// HostWarnings reports what the set leaves open on a host with these
// labels: no applying policy at all, and, on a cardholder data environment
// host (pci-env=cde), a direction no applying policy governs. PCI-DSS
// Req 1.3.1 restricts inbound and 1.3.2 outbound CDE traffic to what is
// necessary, and an ungoverned direction is not filtered at all. These are
// warnings, not errors: a set may be deliberately split across hosts.
func (s *Set) HostWarnings(hostLabels map[string]string) []*Finding {
	var out []*Finding
	field := "labels " + FormatLabels(hostLabels)
	if len(hostLabels) == 0 {
		field = "labels (none)"
	}
	warn := func(format string, args ...any) {
		out = append(out, &Finding{Field: field, Warning: true, Err: fmt.Errorf(format, args...)})
	}
	if len(s.Applying(hostLabels)) == 0 {
		warn("no policy selects these labels, so such a host filters nothing; " +
			"add a policy whose podSelector.matchLabels is a subset of them")
	}
	if hostLabels["pci-env"] != "cde" {
		return out
	}
	gov := s.Governed(hostLabels)
	req := [2]string{Ingress: "1.3.1", Egress: "1.3.2"}
	for _, d := range directions {
		if !gov[d] {
			warn("%s of this CDE host is governed by no applying policy and is not filtered (PCI-DSS Req %s); "+
				"add a policy selecting it with %s in policyTypes",
				d, req[d], policyTypeName(d))
		}
	}
	return out
}

// RunValidate is `pci-segment validate`: it checks the set at paths, with
// host labels in --labels syntax ("" for none), prints one finding a line
// to w and a summary, and returns the exit code: ExitValid (warnings
// allowed), ExitInvalid, or ExitUsage for malformed labels or no paths.
func RunValidate(w io.Writer, paths []string, labels string) int {
	if len(paths) == 0 {
		fmt.Fprintln(w, "validate: no policy path given; use -f FILE, DIRECTORY or GLOB")
		return ExitUsage
	}
	hostLabels, err := ParseLabels(labels)
	if err != nil {
		fmt.Fprintf(w, "validate: --labels: %v\n", err)
		return ExitUsage
	}
	r := Validate(paths, hostLabels)
	for _, f := range r.Errors {
		fmt.Fprintln(w, f.Error())
	}
	for _, f := range r.Warnings {
		fmt.Fprintln(w, f.Error())
	}
	if !r.Valid() {
		fmt.Fprintf(w, "invalid: %s, %s\n",
			plural(len(r.Errors), "error"), plural(len(r.Warnings), "warning"))
		return ExitInvalid
	}
	fmt.Fprintf(w, "valid: %s, %s, %s, set sha256 %s\n",
		plural(len(r.Set.Files), "file"), plural(len(r.Set.Policies), "policy"),
		plural(len(r.Warnings), "warning"), r.Set.HashHex())
	return ExitValid
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if word == "policy" {
		return fmt.Sprintf("%d policies", n)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
