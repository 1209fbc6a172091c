package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Level is how serious a finding is: an error makes the set invalid, a
// warning does not.
type Level uint8

const (
	LevelError Level = iota
	LevelWarning
)

func (l Level) String() string {
	if l == LevelWarning {
		return "warning"
	}
	return "error"
}

// Finding is one error or warning about a policy file, a document in it, or
// the host labels. Its text is one line,
//
//	FILE:LINE: document N: FIELD: [req 1.3.1] error: message
//
// with the parts that do not apply left out, so an editor can jump to it
// and a person can tell which of several documents in a file is meant.
// Findings about the host rather than a file name the labels as FIELD; a
// finding without a requirement (one made outside this package's checks)
// shows the level only when it is a warning.
type Finding struct {
	File  string // path as given or found; empty for host-level findings
	Line  int    // 1-based; 0 when unknown
	Doc   int    // 1-based document index in File; 0 for the whole file
	Field string // e.g. spec.ingress[0].from[1].ipBlock.cidr
	// Requirement is the PCI-DSS v4.0 requirement the check that found it
	// serves, e.g. "1.3.1" (see "Findings" in the package documentation);
	// empty only for a finding made outside this package's checks.
	Requirement string
	// Warning marks a finding that does not make the set invalid.
	Warning bool
	Err     error
}

// Level is LevelWarning for a warning and LevelError otherwise.
func (f *Finding) Level() Level {
	if f.Warning {
		return LevelWarning
	}
	return LevelError
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
	// A bare error (AsErrors of an error from elsewhere) stays just its
	// message.
	switch {
	case f.Requirement != "":
		add("[req " + f.Requirement + "] " + f.Level().String())
	case f.Warning:
		add(f.Level().String())
	}
	if f.Err != nil {
		add(f.Err.Error())
	}
	return b.String()
}

func (f *Finding) Unwrap() error { return f.Err }

// findingJSON is a Finding as `validate -o json` writes it.
type findingJSON struct {
	File        string `json:"file"`
	Line        int    `json:"line"`
	Document    int    `json:"document"`
	Field       string `json:"field"`
	Level       string `json:"level"`
	Requirement string `json:"requirement"`
	Message     string `json:"message"`
}

// MarshalJSON writes the finding as an object with the keys file, line,
// document, field, level ("error" or "warning"), requirement and message.
// Absent parts are "" or 0, as in the text form.
func (f *Finding) MarshalJSON() ([]byte, error) {
	msg := ""
	if f.Err != nil {
		msg = f.Err.Error()
	}
	return json.Marshal(findingJSON{
		File: f.File, Line: f.Line, Document: f.Doc, Field: f.Field,
		Level: f.Level().String(), Requirement: f.Requirement, Message: msg,
	})
}

// UnmarshalJSON reads what MarshalJSON writes; the message becomes Err.
func (f *Finding) UnmarshalJSON(data []byte) error {
	var j findingJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	var warning bool
	switch j.Level {
	case "error":
	case "warning":
		warning = true
	default:
		return fmt.Errorf("finding level %q is not error or warning", j.Level)
	}
	*f = Finding{
		File: j.File, Line: j.Line, Doc: j.Document, Field: j.Field,
		Requirement: j.Requirement, Warning: warning, Err: errors.New(j.Message),
	}
	return nil
}

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
