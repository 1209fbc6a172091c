package policy

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// Exit codes of `pci-segment validate`. Usage errors (2) are the command
// line's to report, except a malformed --labels or output format, which
// RunValidate reads.
const (
	ExitValid   = 0
	ExitInvalid = 1
	ExitUsage   = 2
)

// Result is what `validate` reports.
type Result struct {
	// Set is the loaded set; nil when Errors is not empty.
	Set *Set
	// Parsed is what loaded, with errors or not, for a report to list;
	// never to enforce. Nil when nothing parsed.
	Parsed *Set
	// Files are the files read, even when the set is invalid.
	Files    []File
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

// Validate loads the set at paths and, when it loads, audits it (Set.Audit)
// for a host with these labels; with labels nil no host is assumed. Every
// finding carries its PCI-DSS requirement.
func Validate(paths []string, hostLabels map[string]string) *Result {
	set, errs := load(paths)
	r := &Result{Errors: errs, Parsed: set}
	if set != nil {
		r.Files = set.Files
		r.Warnings = append(r.Warnings, set.Warnings...)
	}
	if len(errs) == 0 {
		for _, f := range set.Audit(hostLabels) {
			if f.Warning {
				r.Warnings = append(r.Warnings, f)
			} else {
				r.Errors = append(r.Errors, f)
			}
		}
	}
	// The loader's own findings (paths, files, duplicate names) belong to
	// the check their field names.
	for _, list := range [][]*Finding{r.Errors, r.Warnings} {
		for _, f := range list {
			if f.Requirement == "" {
				f.Requirement = schemaCheck(f.Field).requirement
			}
		}
	}
	if r.Valid() {
		r.Set = set
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
	warn := func(c check, format string, args ...any) {
		out = append(out, c.finding("", 0, 0, field, format, args...))
	}
	if len(s.Applying(hostLabels)) == 0 {
		warn(checkNoPolicy, "no policy selects these labels, so such a host filters nothing; "+
			"add a policy whose podSelector.matchLabels is a subset of them")
	}
	if hostLabels["pci-env"] != "cde" {
		return out
	}
	gov := s.Governed(hostLabels)
	for _, d := range directions {
		if !gov[d] {
			c := byDirection(d, checkUngovernedIngress, checkUngovernedEgress)
			warn(c, "%s of this CDE host is governed by no applying policy and is not filtered (PCI-DSS Req %s); "+
				"add a policy selecting it with %s in policyTypes",
				d, c.requirement, policyTypeName(d))
		}
	}
	return out
}

// ValidationReport is the document `validate -o json` prints.
type ValidationReport struct {
	Valid    bool           `json:"valid"`
	Errors   []*Finding     `json:"errors"`
	Warnings []*Finding     `json:"warnings"`
	Files    []ReportedFile `json:"files"`
	// SetSHA256 is Set.HashHex of a valid set; empty when invalid.
	SetSHA256 string `json:"set_sha256"`
}

// ReportedFile is one file read, with the SHA-256 of its contents in hex.
type ReportedFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Report is the result as `validate -o json` prints it; lists are empty,
// never null.
func (r *Result) Report() ValidationReport {
	rep := ValidationReport{
		Valid:    r.Valid(),
		Errors:   append([]*Finding{}, r.Errors...),
		Warnings: append([]*Finding{}, r.Warnings...),
		Files:    []ReportedFile{},
	}
	for _, f := range r.Files {
		rep.Files = append(rep.Files, ReportedFile{Path: f.Path, SHA256: hex.EncodeToString(f.SHA256[:])})
	}
	if r.Set != nil {
		rep.SetSHA256 = r.Set.HashHex()
	}
	return rep
}

// RunValidate is `pci-segment validate`: it checks the set at paths, with
// host labels in --labels syntax ("" for none), and writes to w, in format
// "text" (one finding a line, then a summary) or "json" (a
// ValidationReport). It returns the exit code: ExitValid (warnings
// allowed), ExitInvalid, or ExitUsage for no paths, malformed labels or
// another format.
func RunValidate(w io.Writer, paths []string, labels string, format string) int {
	if format != "text" && format != "json" {
		fmt.Fprintf(w, "validate: output format %q is not supported; use text or json\n", format)
		return ExitUsage
	}
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
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r.Report()); err != nil {
			return ExitInvalid // w failed; there is nothing left to tell it
		}
		return r.ExitCode()
	}
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
