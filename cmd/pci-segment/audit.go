package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/pci-segment/pci-segment/audit"
)

type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Check the audit trail's chain: every file, rotated and compressed ones too. Exit 0 intact, 1 tampered or broken, 2 error, 3 not verified (no --key: order and links only, an edited record would not show; or --seals holding no seal)."`
}

type auditVerifyCmd struct {
	Dir      string `arg:"" optional:"" default:"/var/log/pci-segment" help:"The audit directory."`
	Key      string `help:"A chain's first key file, or a directory of them (the loader's --key-dir, /var/lib/pci-segment-keys), root's or yours and writable by no one else: without, MACs are not checked, only order and links."`
	StateDir string `default:"/var/lib/pci-segment" help:"The worker's state directory; its chain state shows a truncated tail. Empty to skip."`
	Seals    string `help:"A syslog export holding the seals the worker copied there: each must be in the log, which shows a tail cut past the state."`
	Output   string `short:"o" default:"text" enum:"text,json" help:"Output format."`
}

func (c auditVerifyCmd) run(stdout, stderr io.Writer) int {
	keys := map[string]audit.Key{}
	if c.Key != "" {
		var err error
		if keys, err = audit.ReadKeys(c.Key); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	var state *audit.State
	if c.StateDir != "" {
		st, err := audit.LoadState(c.StateDir)
		switch {
		case err == nil:
			state = &st
		case !errors.Is(err, audit.ErrNoState):
			fmt.Fprintf(stderr, "%v (give --state-dir \"\" to verify without it)\n", err)
			return 2
		}
	}
	rep, err := audit.Verify(c.Dir, keys, state)
	if err == nil && c.Seals != "" {
		seals, serr := audit.ReadSeals(c.Seals)
		if serr != nil {
			fmt.Fprintln(stderr, serr)
			return 2
		}
		n := len(seals)
		rep.SealsChecked = &n
		err = audit.CheckSeals(c.Dir, seals)
		if p, ok := err.(*audit.Problem); ok {
			rep.Problem = p
		}
	}
	noSeals := rep.SealsChecked != nil && *rep.SealsChecked == 0 // asked for, none there
	var p *audit.Problem
	if err != nil && !errors.As(err, &p) {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if c.Output == "json" {
		json.NewEncoder(stdout).Encode(rep)
	} else {
		// Each line says what was proven and what was not: an auditor
		// must not read "intact" into a check that could not see.
		fmt.Fprintf(stdout, "%d records in %d files, %d chains\n", rep.Records, len(rep.Files), len(rep.Chains))
		if !rep.Keyed {
			fmt.Fprintln(stdout, "MACs NOT checked: no first key given for every chain (--key), so an edited record would not show; only order and links were checked")
			for _, chain := range rep.Chains {
				if _, ok := keys[chain]; !ok && c.Key != "" {
					fmt.Fprintf(stdout, "no first key for chain %s in %s (a build before --key-dir kept them in the state directory's audit-keys/: docs/HARDENING.md says how to move them)\n", chain, c.Key)
				}
			}
		}
		switch {
		case state == nil:
			fmt.Fprintln(stdout, "tail NOT anchored: no worker chain state (--state-dir), so a cut tail would not show")
		case p == nil && rep.Anchored < rep.LastSeq:
			fmt.Fprintf(stdout, "tail anchored up to record %d by the worker's state; records %d to %d are not yet: "+
				"a cut among them would not show until their epoch is sealed (at a clean stop, every %d records or %v)\n",
				rep.Anchored, rep.Anchored+1, rep.LastSeq, audit.EpochRecords, audit.EpochDuration)
		}
		switch {
		case noSeals:
			fmt.Fprintf(stdout, "seals NOT checked: %s holds no seal record, so nothing was held against syslog\n", c.Seals)
		case rep.SealsChecked != nil && p == nil:
			fmt.Fprintf(stdout, "%d seals in %s, each in the log as syslog has it\n", *rep.SealsChecked, c.Seals)
		}
		if state != nil && c.Seals == "" {
			// The state is the worker's own file: it shows a cut made by
			// anyone else, not one the account made with the state.
			fmt.Fprintln(stdout, "the state is the service account's file: --seals (the syslog copies) checks the tail against the account too")
		}
		switch {
		case p != nil && p.Line == 0:
			fmt.Fprintf(stdout, "FAILED at %s: record %d %s: %s\n", filepath.Base(p.File), p.Seq, p.Kind, p.Why)
		case p != nil:
			fmt.Fprintf(stdout, "FAILED at %s line %d: record %d %s: %s\n", filepath.Base(p.File), p.Line, p.Seq, p.Kind, p.Why)
		case !rep.Keyed:
			fmt.Fprintf(stdout, "NOT VERIFIED: order and links hold up to record %d; give --key to check the MACs\n", rep.LastSeq)
		case noSeals:
			fmt.Fprintf(stdout, "NOT VERIFIED: the MACs hold up to record %d, but the seals asked for were not there to check\n", rep.LastSeq)
		default:
			fmt.Fprintf(stdout, "intact, up to record %d\n", rep.LastSeq)
		}
	}
	switch {
	case p != nil:
		return 1
	case !rep.Keyed || noSeals:
		return 3
	}
	return 0
}
