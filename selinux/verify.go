package selinux

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	goselinux "github.com/opencontainers/selinux/go-selinux"
)

// Context is a security context, user:role:type[:level].
type Context struct {
	User, Role, Type, Level string
}

// level is an MLS level or range with categories: s0, s0-s15:c0.c1023,
// s0:c1,c2.
var level = regexp.MustCompile(`^s[0-9]+(:c[0-9]+(\.c[0-9]+)?(,c[0-9]+(\.c[0-9]+)?)*)?(-s[0-9]+(:c[0-9]+(\.c[0-9]+)?(,c[0-9]+(\.c[0-9]+)?)*)?)?$`)

// ParseContext reads a context as the kernel gives it (a trailing NUL or
// newline allowed).
func ParseContext(s string) (Context, error) {
	s = strings.TrimRight(s, "\x00\n")
	parts := strings.SplitN(s, ":", 4)
	if len(parts) < 3 {
		return Context{}, fmt.Errorf("SELinux context %q: want user:role:type[:level]", s)
	}
	c := Context{User: parts[0], Role: parts[1], Type: parts[2]}
	for _, f := range []string{c.User, c.Role, c.Type} {
		if f == "" || strings.ContainsAny(f, " \t") {
			return Context{}, fmt.Errorf("SELinux context %q: empty or malformed field", s)
		}
	}
	if len(parts) == 4 {
		c.Level = parts[3]
		if !level.MatchString(c.Level) {
			return Context{}, fmt.Errorf("SELinux context %q: malformed level %q", s, c.Level)
		}
	}
	return c, nil
}

// Source is what the kernel says about SELinux and this process; the
// tests give their own.
type Source interface {
	// Enabled reports whether SELinux is active: selinuxfs mounted and a
	// policy loaded (a config file saying enforcing is not enough).
	Enabled() bool
	// Mode is 1 enforcing, 0 permissive, -1 disabled.
	Mode() int
	// Current is this process's context.
	Current() (string, error)
}

// Kernel is the running kernel, through opencontainers/selinux.
type Kernel struct{}

func (Kernel) Enabled() bool            { return goselinux.GetEnabled() }
func (Kernel) Mode() int                { return goselinux.EnforceMode() }
func (Kernel) Current() (string, error) { return goselinux.CurrentLabel() }

// ErrNotConfined is wrapped by Verify's error when the process is not in
// the domain it should be (or SELinux is not active).
var ErrNotConfined = errors.New("not confined as expected")

// Guide is where the errors point.
const Guide = "docs/HARDENING.md, \"SELinux\""

// Verify checks that this process runs in domain want under an active,
// enforcing SELinux. Permissive is a warning (returned as warn, err nil);
// not active, unconfined or another domain is an error naming the guide.
func Verify(want string, src Source) (warn string, err error) {
	if !src.Enabled() {
		return "", fmt.Errorf("%w: SELinux not active (no selinuxfs or no policy loaded), want domain %s: see %s", ErrNotConfined, want, Guide)
	}
	cur, err := src.Current()
	if err != nil {
		return "", fmt.Errorf("%w: read this process's SELinux context: %v; see %s", ErrNotConfined, err, Guide)
	}
	c, err := ParseContext(cur)
	if err != nil {
		return "", fmt.Errorf("%w: %v; see %s", ErrNotConfined, err, Guide)
	}
	switch {
	case c.Type == "unconfined_t" || strings.HasPrefix(c.Type, "unconfined_"):
		return "", fmt.Errorf("%w: running unconfined (%s), want domain %s: see %s", ErrNotConfined, cur, want, Guide)
	case c.Type != want:
		return "", fmt.Errorf("%w: running in %s, want domain %s: see %s", ErrNotConfined, c.Type, want, Guide)
	}
	switch src.Mode() {
	case 1:
		return "", nil
	case 0:
		return fmt.Sprintf("SELinux is permissive: domain %s is logged, not enforced", want), nil
	}
	return "", fmt.Errorf("%w: SELinux disabled, want domain %s enforcing: see %s", ErrNotConfined, want, Guide)
}
