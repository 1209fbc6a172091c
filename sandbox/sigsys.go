package sandbox

/*
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif

enum { sandbox_max_nr = 1024 };

static const char *sandbox_names[sandbox_max_nr];
static const char *sandbox_prefix = "";
static int sandbox_status = 1;

static void sandbox_set_name(int nr, const char *name) {
	if (nr >= 0 && nr < sandbox_max_nr)
		sandbox_names[nr] = name;
}

// Appends s to buf, which has room for cap bytes, from *n on.
static void sandbox_put(char *buf, size_t cap, size_t *n, const char *s) {
	while (*s && *n < cap)
		buf[(*n)++] = *s++;
}

static void sandbox_put_uint(char *buf, size_t cap, size_t *n, unsigned long v) {
	char digits[24];
	int i = sizeof digits - 1;
	digits[i] = 0;
	do {
		digits[--i] = '0' + v % 10;
		v /= 10;
	} while (v && i > 0);
	sandbox_put(buf, cap, n, digits + i);
}

// sandbox_sigsys runs on the thread whose call the filter trapped. It may
// use only async-signal-safe means and only calls the worker's filters
// allow: one write(2) and exit_group(2), which ends every thread at once.
static void sandbox_sigsys(int sig, siginfo_t *info, void *uctx) {
	char buf[256];
	size_t n = 0;
	int status = 2;
	(void)sig;
	(void)uctx;
	if (info->si_code == SYS_SECCOMP) {
		int nr = info->si_syscall;
		const char *name = "unknown";
		if (nr >= 0 && nr < sandbox_max_nr && sandbox_names[nr])
			name = sandbox_names[nr];
		sandbox_put(buf, sizeof buf - 1, &n, sandbox_prefix);
		sandbox_put(buf, sizeof buf - 1, &n, name);
		sandbox_put(buf, sizeof buf - 1, &n, " (");
		sandbox_put_uint(buf, sizeof buf - 1, &n, (unsigned int)nr);
		sandbox_put(buf, sizeof buf - 1, &n, ")");
		status = sandbox_status;
	} else {
		// Sent by a process, not by the filter: exit as the Go runtime
		// would have.
		sandbox_put(buf, sizeof buf - 1, &n, "SIGSYS from pid ");
		sandbox_put_uint(buf, sizeof buf - 1, &n, (unsigned int)info->si_pid);
		sandbox_put(buf, sizeof buf - 1, &n, ", not from the seccomp filter");
	}
	buf[n++] = '\n';
	syscall(SYS_write, 2, buf, n);
	syscall(SYS_exit_group, status);
}

static int sandbox_take_sigsys(const char *prefix, int status) {
	struct sigaction sa;
	sandbox_prefix = prefix;
	sandbox_status = status;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = sandbox_sigsys;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigfillset(&sa.sa_mask);
	return sigaction(SIGSYS, &sa, NULL);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	seccomp "github.com/seccomp/libseccomp-golang"
)

// ViolationExitStatus is the exit status of a process whose filter killed
// a call: 128+SIGSYS, what a shell shows for a death by SIGSYS. The Go
// runtime never exits with it.
const ViolationExitStatus = 128 + int(syscall.SIGSYS)

// ViolationPrefix starts the one line the SIGSYS reporter writes to stderr
// before ending the process: ViolationPrefix, the syscall's name (or
// "unknown"), and its number in parentheses, for example
//
//	seccomp: worker killed: forbidden syscall setuid (105)
const ViolationPrefix = "seccomp: worker killed: forbidden syscall "

// Violation is a call the filter killed the process for.
type Violation struct {
	Syscall string
	Nr      int
}

// ParseViolation reads a line the SIGSYS reporter wrote.
func ParseViolation(line string) (Violation, bool) {
	rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), ViolationPrefix)
	if !ok {
		return Violation{}, false
	}
	name, num, ok := strings.Cut(rest, " (")
	num, closed := strings.CutSuffix(num, ")")
	nr, err := strconv.Atoi(num)
	if !ok || !closed || err != nil || name == "" || nr < 0 {
		return Violation{}, false
	}
	return Violation{Syscall: name, Nr: nr}, true
}

// KilledByFilter reports whether a process that ended with state was
// killed by its seccomp filter: through the reporter, with
// [ViolationExitStatus] (a [Violation] line on its stderr says which call),
// or outright by SIGSYS, which is what a call from another ABI (i386 or
// x32) gets.
func KilledByFilter(state *os.ProcessState) bool {
	if state == nil {
		return false
	}
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok {
		return false
	}
	return (ws.Exited() && ws.ExitStatus() == ViolationExitStatus) ||
		(ws.Signaled() && ws.Signal() == syscall.SIGSYS)
}

// The names the reporter prints, resolved once by libseccomp and kept in C
// memory for the life of the process: a signal handler can only read them.
var namesOnce sync.Once
var cPrefix *C.char

// installReporter makes SIGSYS from the filter print a [Violation] line and
// end the process with [ViolationExitStatus].
//
// The Go runtime's own handler treats such a SIGSYS as a crash: it prints a
// goroutine dump without the call's name and exits with status 2, which a
// panic also gives. signal.Notify cannot catch it (the runtime forwards
// only signals sent by a process). So a small C handler takes SIGSYS over,
// after the runtime's set-up and before the filter loads.
func installReporter() error {
	namesOnce.Do(func() {
		for nr := range C.sandbox_max_nr {
			name, err := seccomp.ScmpSyscall(nr).GetName()
			if err == nil && name != "" {
				C.sandbox_set_name(C.int(nr), C.CString(name))
			}
		}
		cPrefix = C.CString(ViolationPrefix)
	})
	if rc, err := C.sandbox_take_sigsys(cPrefix, C.int(ViolationExitStatus)); rc != 0 {
		if err == nil {
			err = errors.New("sigaction failed")
		}
		return fmt.Errorf("install SIGSYS reporter: %w", err)
	}
	return nil
}
