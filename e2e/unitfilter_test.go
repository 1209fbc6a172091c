package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// unitFilterEnv makes the test binary a wrapper that installs the system
// call filter and address families of pci-segment.service, as systemd
// builds them, then executes the rest of its command line (the loader).
const unitFilterEnv = "PCI_SEGMENT_TEST_UNIT_FILTER"

// unitSyscalls reads the unit's SystemCallFilter= lines and expands them
// with systemd-analyze's own group tables: what systemd would allow.
func unitSyscalls(unit string) (map[string]bool, error) {
	b, err := os.ReadFile(unit)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command("systemd-analyze", "syscall-filter").Output()
	if err != nil {
		return nil, fmt.Errorf("systemd-analyze syscall-filter: %w", err)
	}
	groups := map[string][]string{}
	var cur string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		switch t := strings.TrimSpace(line); {
		case strings.HasPrefix(line, "@"):
			cur = t
		case t == "" || strings.HasPrefix(t, "#"):
		case cur != "":
			groups[cur] = append(groups[cur], t)
		}
	}
	var expand func(name string, into map[string]bool)
	expand = func(name string, into map[string]bool) {
		if !strings.HasPrefix(name, "@") {
			into[name] = true
			return
		}
		for _, e := range groups[name] {
			expand(e, into)
		}
	}
	allow, deny := map[string]bool{}, map[string]bool{}
	expand("@default", allow) // systemd always permits it
	for _, m := range regexp.MustCompile(`(?m)^SystemCallFilter=(.*)$`).FindAllSubmatch(b, -1) {
		v := string(m[1])
		into := allow
		if strings.HasPrefix(v, "~") {
			into, v = deny, v[1:]
		}
		for _, f := range strings.Fields(v) {
			expand(f, into)
		}
	}
	for name := range deny {
		delete(allow, name)
	}
	return allow, nil
}

// execUnderUnitFilter is the wrapper: the unit's allowed calls, EPERM for
// the rest (SystemCallErrorNumber=EPERM), socket() only for AF_UNIX and
// AF_NETLINK (RestrictAddressFamilies), NoNewPrivs; then exec.
func execUnderUnitFilter() int {
	allow, err := unitSyscalls(os.Getenv(unitFilterEnv))
	if err == nil {
		err = installUnitFilter(allow)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "unit filter:", err)
		return 1
	}
	args := os.Args[1:]
	fmt.Fprintln(os.Stderr, syscall.Exec(args[0], args, os.Environ()))
	return 1
}

func installUnitFilter(allow map[string]bool) error {
	f, err := seccomp.NewFilter(seccomp.ActErrno.SetReturnCode(int16(unix.EPERM)))
	if err != nil {
		return err
	}
	defer f.Release()
	for name := range allow {
		sc, err := seccomp.GetSyscallFromName(name)
		if err != nil || name == "socket" {
			continue // unknown here, or conditional below
		}
		if err := f.AddRule(sc, seccomp.ActAllow); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	sock, _ := seccomp.GetSyscallFromName("socket")
	for _, family := range []uint64{unix.AF_UNIX, unix.AF_NETLINK} {
		cond, _ := seccomp.MakeCondition(0, seccomp.CompareEqual, family)
		if err := f.AddRuleConditional(sock, seccomp.ActAllow, []seccomp.ScmpCondition{cond}); err != nil {
			return err
		}
	}
	return f.Load()
}
