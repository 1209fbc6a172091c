package bpf

import (
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

// The sizes compiled into the object are DefaultSizes, so that Spec and
// the object say the same.
func TestObjectIsSizedForTheDefaults(t *testing.T) {
	spec, err := LoadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{DatapathMapAddr4, DatapathMapAddr6, DatapathMapPorts, DatapathMapConntrack} {
		if got, want := spec.Maps[name].MaxEntries, DefaultSizes.maxEntries(name); got != want {
			t.Errorf("%s: %d entries in the object, DefaultSizes gives %d", name, got, want)
		}
	}
}

func TestCheckWantsTheLoadersSizes(t *testing.T) {
	testenv.RequireRoot(t)
	sizes := Sizes{Prefixes: 10, PortEntries: 20, Flows: 30}
	objs, err := LoadWithSizes(sizes)
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	for _, name := range WorkerMaps {
		m, err := objs.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(m, name, sizes); err != nil {
			t.Errorf("%s with the sizes it was made with: %v", name, err)
		}
	}
	for _, name := range []string{"addr4", "addr6", "ports"} {
		m, _ := objs.ByName(name)
		if err := Check(m, name, DefaultSizes); err == nil || !strings.Contains(err.Error(), "capacity") {
			t.Errorf("%s checked against other sizes: %v, want a capacity mismatch", name, err)
		}
	}
	m, _ := objs.ByName("addr4")
	if err := Check(m, "addr6", sizes); err == nil {
		t.Error("addr4 passed for addr6")
	}
}

func TestSizesOutOfBoundsNameTheirFlag(t *testing.T) {
	for _, tc := range []struct {
		s    Sizes
		flag string
	}{
		{Sizes{Prefixes: 0, PortEntries: 1, Flows: 1}, "--max-prefixes 0"},
		{Sizes{Prefixes: 1, PortEntries: MaxSizePortEntries + 1, Flows: 1}, "--max-port-entries"},
		{Sizes{Prefixes: 1, PortEntries: 1, Flows: -1}, "--max-flows -1"},
	} {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: %v, want an error naming %s", tc.s, err, tc.flag)
		}
	}
	if err := DefaultSizes.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if got := (Sizes{Flows: 7}).OrDefault(); got != (Sizes{DefaultSizes.Prefixes, DefaultSizes.PortEntries, 7}) {
		t.Errorf("OrDefault: %+v", got)
	}
}
