package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/audit"
	"github.com/pci-segment/pci-segment/pins"
)

type detachCmd struct {
	PinDir string `default:"/sys/fs/bpf/pci-segment" help:"bpffs directory the enforcer pinned to."`
	Syslog string `default:"/dev/log" help:"Syslog socket the removal is recorded to, as an enforcement_detached record beside the audit seals (authpriv.notice, pci-segment-audit); empty for none."`
}

// run removes the links and pins, then records who did, what went and
// whether it all did: ending enforcement is a change to a security
// control (PCI-DSS Req 10.2.1.7), whether or not the service runs.
func (c detachCmd) run(log hclog.Logger) error {
	// Not stopped half-way by `enforce --replace`, which signals the pin
	// directory's lock holder: it waits, then says who held it.
	signal.Ignore(syscall.SIGTERM)
	links, err := pins.Detach(c.PinDir, log)
	if len(links) == 0 && (err == nil || errors.Is(err, pins.ErrLocked)) {
		return err // nothing changed
	}
	now := time.Now().UTC()
	r := audit.Record{Time: now.Format(time.RFC3339Nano), TimeNS: now.UnixNano(), Type: audit.TypeDetached, Outcome: "success",
		Who: who(), Resource: c.PinDir, Details: map[string]any{"links": links}}
	r.Host, _ = os.Hostname()
	if err != nil {
		r.Outcome, r.Details["error"] = "failure", err.Error()
	}
	if rerr := c.record(r); rerr != nil {
		log.Warn("the removal is not recorded in syslog", "syslog", c.Syslog, "error", rerr)
	} else if c.Syslog != "" {
		log.Info("removal recorded in syslog", "type", audit.TypeDetached, "links", len(links))
	}
	return err
}

// record sends r to syslog as the worker sends its seals
// (audit.SyslogMessage). Its seq is 0: it is not in the chain.
func (c detachCmd) record(r audit.Record) error {
	if c.Syslog == "" {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	conn, err := net.Dial("unixgram", c.Syslog)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write(audit.SyslogMessage(b))
	return err
}

// who names the user behind this process: its uid, the login uid the
// kernel keeps across su and sudo, and sudo's caller.
func who() string {
	parts := []string{fmt.Sprintf("uid %d", os.Geteuid())}
	if b, err := os.ReadFile("/proc/self/loginuid"); err == nil {
		if id := strings.TrimSpace(string(b)); id != "4294967295" && id != "" {
			parts = append(parts, "login uid "+id)
		}
	}
	if u := os.Getenv("SUDO_USER"); u != "" {
		parts = append(parts, "via sudo by "+u)
	}
	return strings.Join(parts, ", ")
}
