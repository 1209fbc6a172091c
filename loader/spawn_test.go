package loader

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/sandbox"
)

// What a worker writes is untrusted: a flood is cut to the rate and
// counted, a long line is cut, and only the first violation report is
// taken as one.
func TestRelayOutputHoldsTheWorkerToItsRate(t *testing.T) {
	var in strings.Builder
	const flood = 1000
	for i := range flood {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	in.WriteString(strings.Repeat("x", 2*maxOutputLine+100) + "\n")
	fmt.Fprintf(&in, "%ssetuid (105)\n%sptrace (101)\n", sandbox.ViolationPrefix, sandbox.ViolationPrefix)

	var out bytes.Buffer
	v := relayOutput(strings.NewReader(in.String()), hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info}))
	if v == nil || v.Syscall != "setuid" || v.Nr != 105 {
		t.Errorf("violation %+v, want the first report, setuid (105)", v)
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
	// Lines in: the flood, the long one in three pieces, the second report.
	if total := flood + 3 + 1; logged+suppressed != total {
		t.Errorf("%d logged + %d suppressed, want all %d lines accounted for", logged, suppressed, total)
	}
	if logged > 2*outputPerSec {
		t.Errorf("%d lines logged at once, want about %d (outputPerSec)", logged, outputPerSec)
	}
}
