package loader

import (
	"fmt"
	"os"
	"strings"

	"github.com/pci-segment/pci-segment/privilege"
)

// requiredCaps are what the loader uses: load and attach eBPF (BPF,
// NET_ADMIN, PERFMON for the verifier's pointer arithmetic), start the worker
// as another user with an empty bounding set (SETUID, SETGID, SETPCAP) and
// signal it (KILL). Nothing else: this is the unit's bounding set. CHOWN is
// used only when the audit and state directories are not yet as the worker
// needs them (tmpfiles.d makes them so under systemd).
var requiredCaps = []privilege.Cap{privilege.CapBPF, privilege.CapNetAdmin, privilege.CapPerfmon,
	privilege.CapSetuid, privilege.CapSetgid, privilege.CapSetpcap, privilege.CapKill}

// keptCaps are the capabilities the loader keeps once the programs are
// loaded and the directories made: to start a new worker (SETUID, SETGID
// to change identity; SETPCAP to empty the worker's bounding set; KILL to
// stop a worker of another uid) and to attach to interfaces (BPF,
// NET_ADMIN). PERFMON (needed by the verifier at load), CHOWN (the audit
// directory) and every other capability are gone, from every thread
// (privilege.LimitProcess).
var keptCaps = []privilege.Cap{privilege.CapBPF, privilege.CapNetAdmin, privilege.CapSetuid,
	privilege.CapSetgid, privilege.CapSetpcap, privilege.CapKill}

// checkPrivileges refuses to run without root, or names each missing
// capability.
func checkPrivileges() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("enforce must run as root (running as uid %d): it loads eBPF programs and starts the unprivileged worker", os.Geteuid())
	}
	missing, err := privilege.MissingCaps(requiredCaps)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing capabilities %s: add them to the unit's CapabilityBoundingSet (root alone is not enough when the bounding set is reduced)", strings.Join(missing, ","))
	}
	return nil
}
