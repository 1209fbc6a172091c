package datapath

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/testenv"
)

// Both ways of clearing a half, batched and a key at a time (for kernels
// without batch operations), delete exactly the half's entries, also
// across more entries than one batch reads.
func TestDeleteWhereClearsExactlyTheHalf(t *testing.T) {
	testenv.RequireRoot(t)
	for name, del := range map[string]func(*ebpf.Map, func(*bpf.DatapathAddr4Key) bool) error{
		"batched":    deleteWhere[bpf.DatapathAddr4Key, bpf.DatapathAddrValue],
		"one by one": deleteEach[bpf.DatapathAddr4Key],
	} {
		t.Run(name, func(t *testing.T) {
			objs, err := bpf.LoadWithSizes(bpf.Sizes{Prefixes: 4 * batchChunk, PortEntries: 64, Flows: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer objs.Close()
			const n = batchChunk + 100 // per half
			var keys []bpf.DatapathAddr4Key
			for half := range 2 {
				for i := range n {
					k := bpf.DatapathAddr4Key{Prefixlen: 32 + 32, Half: uint8(half)}
					k.Addr = [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
					keys = append(keys, k)
				}
			}
			if _, err := objs.Addr4.BatchUpdate(keys, make([]bpf.DatapathAddrValue, len(keys)), nil); err != nil {
				t.Fatal(err)
			}
			if err := del(objs.Addr4, func(k *bpf.DatapathAddr4Key) bool { return k.Half == 1 }); err != nil {
				t.Fatal(err)
			}
			count := [2]int{}
			var k bpf.DatapathAddr4Key
			var v bpf.DatapathAddrValue
			for it := objs.Addr4.Iterate(); it.Next(&k, &v); {
				count[k.Half]++
			}
			if count != [2]int{n, 0} {
				t.Errorf("left %d entries of half 0 and %d of half 1, want %d and 0", count[0], count[1], n)
			}
		})
	}
}
