package loader

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/sandbox"
)

// What a worker writes is untrusted: a flood is cut to the rate and
// counted, a long line is cut, and the last whole violation report is
// taken as the worker's last word.
func TestRelayOutputHoldsTheWorkerToItsRate(t *testing.T) {
	var in strings.Builder
	const flood = 1000
	for i := range flood {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	in.WriteString(strings.Repeat("x", 2*maxOutputLine+100) + "\n")
	fmt.Fprintf(&in, "%ssetuid (105)\n%sptrace (101)\n", sandbox.ViolationPrefix, sandbox.ViolationPrefix)
	// Not a line of its own: the second piece of a long one.
	fmt.Fprintf(&in, "%s%skill (62)\n", strings.Repeat("y", maxOutputLine), sandbox.ViolationPrefix)

	var out bytes.Buffer
	var violation atomic.Pointer[sandbox.Violation]
	relayOutput(strings.NewReader(in.String()), hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info}), &violation)
	if v := violation.Load(); v == nil || v.Syscall != "ptrace" || v.Nr != 101 {
		t.Errorf("violation %+v, want the last report, ptrace (101)", v)
	}
	logged, suppressed := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if m := regexp.MustCompile(`worker output suppressed: lines=(\d+)`).FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			suppressed += n
			continue
		}
		logged++
		if len(l) > maxOutputLine+200 {
			t.Errorf("a %d-byte log line: long output must be cut", len(l))
		}
	}
	// Lines in: the flood, the long one in three pieces, the two reports,
	// the last one in two.
	if total := flood + 3 + 2 + 2; logged+suppressed != total {
		t.Errorf("%d logged + %d suppressed, want all %d lines accounted for", logged, suppressed, total)
	}
	if logged > 2*outputPerSec {
		t.Errorf("%d lines logged at once, want about %d (outputPerSec)", logged, outputPerSec)
	}
}
