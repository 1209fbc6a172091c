// Package envflag parses the boolean switches pci-segment reads from its
// environment.
//
// The accepted spellings are deliberately few (1/true/yes and 0/false/no,
// any case; unset or empty means false) so that a typo in a unit file is an
// error at start-up rather than a silently ignored security switch.
package envflag

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrInvalid is wrapped by every error for a value that is not an accepted
// boolean spelling.
var ErrInvalid = errors.New("want one of 1, true, yes, 0, false, no (any case), or empty")

// ParseBool parses value as the boolean environment variable name. An empty
// value is false. The error names the variable and the accepted values.
func ParseBool(name, value string) (bool, error) {
	switch strings.ToLower(value) {
	case "", "0", "false", "no":
		return false, nil
	case "1", "true", "yes":
		return true, nil
	}
	return false, fmt.Errorf("environment variable %s=%q: %w", name, value, ErrInvalid)
}

// Bool reads the environment variable name and parses it with [ParseBool].
func Bool(name string) (bool, error) {
	return ParseBool(name, os.Getenv(name))
}
