package privilege

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestWorkerAccountOverrides(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		root bool
		// want: the account chosen, or the error's text; warn: a
		// warning the log must hold.
		user, group, err, warn string
	}{
		{name: "another account takes its own group", env: map[string]string{"PCI_SEGMENT_PRIVILEGE_USER": "nobody"},
			user: "nobody", group: "nobody", err: "service group \"nobody\" does not exist", warn: "worker user changed"},
		{name: "account and group", env: map[string]string{"PCI_SEGMENT_PRIVILEGE_USER": "nobody", "PCI_SEGMENT_PRIVILEGE_GROUP": "nogroup"},
			user: "nobody", group: "nogroup", warn: "worker group changed"},
		{name: "skip drop", env: map[string]string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP": "1"}, user: "root", group: "root", warn: "keeps uid 0"},
		{name: "allow root", root: true, user: "root", group: "root", warn: "keeps uid 0"},
		{name: "off is not a boolean", env: map[string]string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP": "off"}, err: "PCI_SEGMENT_SKIP_PRIVILEGE_DROP"},
		{name: "the worker's switch checked too", env: map[string]string{"PCI_SEGMENT_DISABLE_SECCOMP": "on"}, err: "PCI_SEGMENT_DISABLE_SECCOMP"},
		{name: "account and root conflict", root: true, env: map[string]string{"PCI_SEGMENT_PRIVILEGE_USER": "nobody"}, err: "conflicting overrides"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "PCI_SEGMENT_DISABLE_SECCOMP", "PCI_SEGMENT_PRIVILEGE_USER", "PCI_SEGMENT_PRIVILEGE_GROUP"} {
				t.Setenv(k, c.env[k])
			}
			var out bytes.Buffer
			a, err := WorkerAccount(c.root, hclog.New(&hclog.LoggerOptions{Output: &out}))
			if c.err != "" && strings.Contains(c.err, "does not exist") && err == nil {
				// The group exists on this host: then the account is
				// what counts.
				c.err = ""
			}
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one naming %q", err, c.err)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			case a.User != c.user || a.Group != c.group:
				t.Errorf("account %s:%s, want %s:%s", a.User, a.Group, c.user, c.group)
			case c.user == "nobody" && a.UID != 65534:
				t.Errorf("nobody resolved to uid %d", a.UID)
			}
			if c.warn != "" && !strings.Contains(out.String(), c.warn) {
				t.Errorf("log %q has no warning %q", out.String(), c.warn)
			}
		})
	}
}
