package apparmor

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
)

// Label is a process's AppArmor confinement: the profile (with a child as
// parent//child) and its mode, or unconfined.
type Label struct {
	Profile string // "unconfined" when not confined
	Mode    string // enforce, complain, kill, ...; "" when unconfined
}

// ParseLabel reads /proc/PID/attr/apparmor/current: "profile (mode)" or
// "unconfined", with a trailing newline or NUL.
func ParseLabel(s string) (Label, error) {
	s = strings.TrimRight(s, "\x00\n")
	if s == "unconfined" {
		return Label{Profile: "unconfined"}, nil
	}
	name, mode, ok := strings.Cut(s, " (")
	if !ok || !strings.HasSuffix(mode, ")") || name == "" || strings.ContainsAny(name, " \t") {
		return Label{}, fmt.Errorf("AppArmor label %q: want \"profile (mode)\" or \"unconfined\"", s)
	}
	return Label{Profile: name, Mode: strings.TrimSuffix(mode, ")")}, nil
}

// Current reads this process's label from the kernel (the newer interface
// first, then the one shared with other LSMs).
func Current() (string, error) {
	for _, p := range []string{"/proc/self/attr/apparmor/current", "/proc/self/attr/current"} {
		// EINVAL: no security module provides the file's contents.
		if b, err := os.ReadFile(p); err == nil {
			return string(b), nil
		} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.EINVAL) {
			return "", err
		}
	}
	return "", ErrNotActive
}

// ErrNotActive is Current's error on a kernel without AppArmor.
var ErrNotActive = errors.New("AppArmor not active (no AppArmor attribute file in /proc/self/attr)")

// ErrNotConfined is wrapped by Verify's error when the process is not
// under the profile it should be.
var ErrNotConfined = errors.New("not confined as expected")

// Guide is where the errors point.
const Guide = "docs/HARDENING.md, \"AppArmor\""

// stackOf reports whether label is a stack (a//&b: each profile confines
// the process, as the worker's stacked exec under NoNewPrivs gives) of want
// and profiles want is a child of: pci-segment//&pci-segment//worker for the
// worker, never a stack with a narrower profile for the loader.
func stackOf(label, want string) bool {
	stack := strings.Split(label, "//&")
	if !slices.Contains(stack, want) {
		return false
	}
	for _, p := range stack {
		if p != want && !strings.HasPrefix(want, p+"//") {
			return false
		}
	}
	return true
}

// Verify checks that the label read (current, err from Current) is profile
// want in enforce mode. Complain is a warning; unconfined, another
// profile or no AppArmor an error naming the guide.
func Verify(want, current string, readErr error) (warn string, err error) {
	if readErr != nil {
		return "", fmt.Errorf("%w: %v, want profile %s: see %s", ErrNotConfined, readErr, want, Guide)
	}
	l, err := ParseLabel(current)
	if err != nil {
		return "", fmt.Errorf("%w: %v; see %s", ErrNotConfined, err, Guide)
	}
	switch {
	case l.Profile == "unconfined":
		return "", fmt.Errorf("%w: running unconfined, want profile %s: see %s", ErrNotConfined, want, Guide)
	case l.Profile != want && !stackOf(l.Profile, want):
		return "", fmt.Errorf("%w: running under %s, want profile %s: see %s", ErrNotConfined, l.Profile, want, Guide)
	case l.Mode == "complain":
		return fmt.Sprintf("AppArmor profile %s is in complain mode: logged, not enforced", want), nil
	case l.Mode == "mixed":
		return fmt.Sprintf("AppArmor stack %s is in mixed mode: a profile in it only logs", l.Profile), nil
	case l.Mode != "enforce":
		return "", fmt.Errorf("%w: profile %s in mode %s, want enforce: see %s", ErrNotConfined, want, l.Mode, Guide)
	}
	return "", nil
}
