package mac

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	goselinux "github.com/opencontainers/selinux/go-selinux"

	"github.com/pci-segment/pci-segment/apparmor"
	"github.com/pci-segment/pci-segment/envflag"
	"github.com/pci-segment/pci-segment/selinux"
)

// ExecWorker sets, on the calling OS thread (locked, and never handed back:
// the loader's spawning thread), the confinement its next exec gives the
// worker, for each module that is active and expected of the worker.
// Rather than a rule on the pci-segment binary's path or type, which any
// exec of it would meet, this thread asks for the worker's confinement
// explicitly, on the one exec that starts it. SELinux: the exec context, the loader's with the
// worker's type (the transition is allowed under NoNewPrivs because the
// worker's type is bounded by the loader's). AppArmor: the worker's profile
// stacked onto the loader's (aa_stack_onexec), the only change NoNewPrivs
// permits, since a stack can only narrow.
//
// Under SkipEnv it asks for nothing: the development hosts that skip the
// check are those without the module or profile loaded, where asking would
// stop every worker.
func ExecWorker(e Expect, k Kernel) error {
	if skip, err := envflag.Bool(SkipEnv); err != nil || skip {
		return err
	}
	if e.SELinux != "" && k.SELinux.Enabled() {
		cur, err := k.SELinux.Current()
		if err != nil {
			return fmt.Errorf("read the loader's SELinux context: %w", err)
		}
		ctx, err := workerContext(cur, e.SELinux)
		if err != nil {
			return err
		}
		if err := goselinux.SetExecLabel(ctx); err != nil {
			return fmt.Errorf("set the worker's SELinux context %s: %w", ctx, err)
		}
	}
	if e.AppArmor != "" {
		if _, err := k.AppArmor(); errors.Is(err, apparmor.ErrNotActive) {
			return nil // the worker's own check says so
		} else if err != nil {
			return fmt.Errorf("read the loader's AppArmor label: %w", err)
		}
		if err := stackOnExec(e.AppArmor); err != nil {
			return fmt.Errorf("stack AppArmor profile %s onto the worker's exec: %w", e.AppArmor, err)
		}
	}
	return nil
}

// workerContext is the loader's context cur with the worker's type.
func workerContext(cur, domain string) (string, error) {
	c, err := selinux.ParseContext(cur)
	if err != nil {
		return "", err
	}
	ctx := c.User + ":" + c.Role + ":" + domain
	if c.Level != "" {
		ctx += ":" + c.Level
	}
	return ctx, nil
}

// stackOnExec is libapparmor's aa_stack_onexec, for this thread.
func stackOnExec(profile string) error {
	var err error
	for _, p := range []string{"/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec"} {
		var f *os.File
		if f, err = os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			_, err = f.WriteString("stack " + profile)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.EINVAL) {
			return err
		}
	}
	return err
}
