package pins

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/bpf"
)

// OtherLayouts are the layout directories below pinDir that are not this
// binary's (left only under --replace).
func OtherLayouts(pinDir string) ([]string, error) {
	layouts, err := Layouts(pinDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for layout := range layouts {
		if layout != bpf.Layout {
			out = append(out, filepath.Join(pinDir, layout))
		}
	}
	return out, nil
}

// CarryConntrack copies the connection-tracking entries of an old layout
// into the new map, when their format is the same, with generation 0 so
// that each is judged again by the policy in force on its next packet.
// A format that changed carries nothing: established flows are then judged
// packet by packet, so what the policy allows still passes.
func CarryConntrack(old string, to *ebpf.Map, log hclog.Logger) {
	from, err := ebpf.LoadPinnedMap(filepath.Join(old, bpf.DatapathMapConntrack), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		log.Warn("connection tracking not carried over", "from", old, "error", err)
		return
	}
	defer from.Close()
	if from.KeySize() != to.KeySize() || from.ValueSize() != to.ValueSize() {
		log.Warn("connection tracking not carried over: its format changed", "from", old)
		return
	}
	var key []byte
	var val bpf.DatapathCtValue
	n := 0
	for it := from.Iterate(); it.Next(&key, &val); {
		val.Generation = 0
		if to.Put(key, val) == nil {
			n++
		}
	}
	log.Info("connection tracking carried over", "from", old, "entries", n)
}

// FindLink is where a link of interface index and direction is pinned:
// below this layout's directory, or under --replace an old layout's.
func FindLink(pinDir string, old []string, index int, dir string) string {
	name := LinkName(index, dir)
	for _, d := range append([]string{LayoutDir(pinDir)}, old...) {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name)
		}
	}
	return ""
}

// Swap puts prog on the link pinned at p, in place: the link stays
// attached at its position and no packet passes unjudged (BPF_LINK_UPDATE).
func Swap(p string, prog *ebpf.Program) (link.Link, error) {
	l, err := link.LoadPinnedLink(p, nil)
	if err != nil {
		return nil, fmt.Errorf("open pinned link %s: %w", p, err)
	}
	if err := l.Update(prog); err != nil {
		l.Close()
		return nil, fmt.Errorf("Swap the program of pinned link %s: %w", p, err)
	}
	return l, nil
}

// RemoveLayout removes an old layout's pins once ours are in place. Links it
// held that were swapped are pinned under this layout too and stay; any
// other (an interface no longer enforced on) goes with its last pin.
func RemoveLayout(dir string, log hclog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read old pin directory: %w", err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove old pin: %w", err)
		}
	}
	log.Info("replaced pins of another layout", "pin_dir", dir, "pins", len(entries))
	return os.Remove(dir)
}

// adoptable decides what a start does with the pins below pinDir, and
// reports whether this layout's remain to be adopted. Pins of another
// layout are never reused as they are: without replace they stop the
// start. Pins of this layout from an interrupted start (some of its maps
// and no link: nothing enforced from them) are removed; maps is how many
// a complete set has.
func adoptable(pinDir string, replace bool, maps int, log hclog.Logger) (bool, error) {
	layouts, err := Layouts(pinDir)
	if err != nil {
		return false, err
	}
	for layout, entries := range layouts {
		if layout != bpf.Layout && len(entries) > 0 && !replace {
			return false, fmt.Errorf("%s holds pins of layout %s, and this binary uses layout %s: they are never reused as they are; "+
				"start with --replace to swap this binary's programs onto those links in place, or run `pci-segment detach --pin-dir %s` first (which opens a gap)",
				pinDir, layout, bpf.Layout, pinDir)
		}
	}
	ours, dir := layouts[bpf.Layout], LayoutDir(pinDir)
	isLink := func(name string) bool { _, _, ok := ParseLinkName(name); return ok }
	if len(ours) == 0 || slices.ContainsFunc(ours, isLink) || len(ours) >= maps {
		return len(ours) > 0, nil
	}
	log.Warn("removing the pins of an interrupted start: no link enforced from them", "pin_dir", dir, "pins", strings.Join(ours, ","))
	for _, name := range ours {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return false, fmt.Errorf("remove pin of an interrupted start: %w", err)
		}
	}
	return false, nil
}

// LoadDatapath loads the datapath for this start, from what pinDir
// holds: over the pinned maps of this layout when a running or
// earlier instance left them (so the policy in force, connection tracking
// and the counters carry on), or afresh. Pins of an interrupted start (maps
// but no link: nothing enforces from them) are removed first. Pins of
// another layout are never reused: without replace they stop the start.
func LoadDatapath(pinDir string, replace bool, sizes bpf.Sizes, log hclog.Logger) (*bpf.DatapathObjects, error) {
	adopt, err := adoptable(pinDir, replace, len((&bpf.DatapathMaps{}).All()), log)
	if err != nil {
		return nil, err
	}
	if !adopt {
		return bpf.LoadWithSizes(sizes)
	}
	dir := LayoutDir(pinDir)
	maps, err := loadMaps(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, m := range maps {
			m.Close()
		}
	}()
	objs, err := bpf.LoadOver(sizes, maps)
	if err != nil {
		return nil, err
	}
	log.Info("adopting the pins in place: the policy in force and connection tracking carry on", "pin_dir", dir)
	return objs, nil
}
