package privilege

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/envflag"
)

// Account is the identity the worker runs as, by name and by number.
type Account struct {
	User, Group string
	Identity    // supplementary groups: exactly the account's
}

// ServiceAccount is the account and group the worker runs as by default.
const ServiceAccount = "pci-segment"

// WorkerAccount is the worker's account after the hardening guide's
// development overrides, each logged as a warning:
// PCI_SEGMENT_PRIVILEGE_USER and _GROUP name another account (the group
// defaults to the user's name); PCI_SEGMENT_SKIP_PRIVILEGE_DROP=1 or
// allowRoot (--allow-root) keep uid 0, still with no capabilities,
// NoNewPrivs and seccomp. Naming an account and keeping root at once is
// refused, as is a malformed boolean, also PCI_SEGMENT_DISABLE_SECCOMP's,
// which the worker reads: a typo stops the start before any worker exists.
func WorkerAccount(allowRoot bool, log hclog.Logger) (Account, error) {
	skip, err := envflag.Bool("PCI_SEGMENT_SKIP_PRIVILEGE_DROP")
	if err != nil {
		return Account{}, err
	}
	if _, err := envflag.Bool("PCI_SEGMENT_DISABLE_SECCOMP"); err != nil {
		return Account{}, err
	}
	name, group := ServiceAccount, ServiceAccount
	if v := os.Getenv("PCI_SEGMENT_PRIVILEGE_USER"); v != "" {
		name = v
		log.Warn("development override in effect: worker user changed", "PCI_SEGMENT_PRIVILEGE_USER", v)
	}
	if v := os.Getenv("PCI_SEGMENT_PRIVILEGE_GROUP"); v != "" {
		group = v
		log.Warn("development override in effect: worker group changed", "PCI_SEGMENT_PRIVILEGE_GROUP", v)
	} else if name != ServiceAccount {
		group = name
	}
	if skip || allowRoot {
		if name != ServiceAccount || group != ServiceAccount {
			return Account{}, fmt.Errorf("conflicting overrides: PCI_SEGMENT_PRIVILEGE_USER/_GROUP name an account, while PCI_SEGMENT_SKIP_PRIVILEGE_DROP or --allow-root keep uid 0; use one of them")
		}
		log.Warn("development override in effect: worker keeps uid 0 (capabilities are still dropped)", "PCI_SEGMENT_SKIP_PRIVILEGE_DROP", skip, "allow_root", allowRoot)
		return Account{User: "root", Group: "root"}, nil
	}
	id, err := LookupAccount(name, group)
	return Account{User: name, Group: group, Identity: id}, err
}
