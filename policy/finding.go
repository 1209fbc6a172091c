package policy

import (
	"errors"
	"strconv"
	"strings"
)

// Finding is one error or warning about a policy file, a document in it, or
// the host labels. Its text is one line,
//
//	FILE:LINE: document N: FIELD: message
//
// with the parts that do not apply left out, so an editor can jump to it
// and a person can tell which of several documents in a file is meant.
type Finding struct {
	File  string // path as given or found; empty for host-level findings
	Line  int    // 1-based; 0 when unknown
	Doc   int    // 1-based document index in File; 0 for the whole file
	Field string // e.g. spec.ingress[0].from[1].ipBlock.cidr
	// Warning marks a finding that does not make the set invalid.
	Warning bool
	Err     error
}

func (f *Finding) Error() string {
	var b strings.Builder
	add := func(s string) {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(s)
	}
	if f.File != "" {
		loc := f.File
		if strings.ContainsFunc(loc, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			loc = strconv.Quote(loc) // a file name must not break the one-line format
		}
		if f.Line > 0 {
			loc += ":" + strconv.Itoa(f.Line)
		}
		add(loc)
	}
	if f.Doc > 0 {
		add("document " + strconv.Itoa(f.Doc))
	}
	if f.Field != "" {
		add(f.Field)
	}
	if f.Warning {
		add("warning")
	}
	if f.Err != nil {
		add(f.Err.Error())
	}
	return b.String()
}

func (f *Finding) Unwrap() error { return f.Err }

// Errors is every error found in a policy set. Load and Parse return it so a
// caller can print one finding a line instead of stopping at the first.
type Errors []*Finding

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, f := range e {
		lines[i] = f.Error()
	}
	return strings.Join(lines, "\n")
}

func (e Errors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, f := range e {
		errs[i] = f
	}
	return errs
}

// AsErrors returns the findings of err when it is or wraps Errors, and err
// as a single finding otherwise.
func AsErrors(err error) Errors {
	if err == nil {
		return nil
	}
	var list Errors
	if errors.As(err, &list) {
		return list
	}
	var f *Finding
	if errors.As(err, &f) {
		return Errors{f}
	}
	return Errors{{Err: err}}
}
