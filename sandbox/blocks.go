package sandbox

import "slices"

// maskedBlock is an aligned power-of-two range of 32-bit values: v lies in
// it exactly when v&mask == value.
type maskedBlock struct {
	value, mask uint32
}

// complementBlocks returns aligned power-of-two blocks that together cover
// every 32-bit value not in allowed, each such value exactly once and no
// allowed value.
//
// An allow-by-default seccomp filter can only say "refuse when the argument
// matches", and libseccomp has no "not in set". A masked equality per block
// says it: a gap between allowed values splits into at most 2*32 blocks, so
// the nine allowed bpf commands cost a few dozen comparisons, all on the bpf
// path only.
func complementBlocks(allowed []uint32) []maskedBlock {
	vals := slices.Clone(allowed)
	slices.Sort(vals)
	vals = slices.Compact(vals)

	var blocks []maskedBlock
	var next uint64 // first value not yet covered or allowed
	for _, v := range vals {
		blocks = appendRange(blocks, next, uint64(v))
		next = uint64(v) + 1
	}
	return appendRange(blocks, next, 1<<32)
}

// appendRange covers [lo, hi) with the largest aligned blocks that fit.
func appendRange(blocks []maskedBlock, lo, hi uint64) []maskedBlock {
	for lo < hi {
		size := uint64(1) << 32
		if lo != 0 {
			size = lo & -lo // the largest power of two lo is aligned to
		}
		for lo+size > hi {
			size >>= 1
		}
		blocks = append(blocks, maskedBlock{value: uint32(lo), mask: uint32(^(size - 1))})
		lo += size
	}
	return blocks
}
