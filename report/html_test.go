package report

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/status"
	"github.com/pci-segment/pci-segment/testenv"
)

// sections are the report's parts, by element id and heading.
var sections = map[string]string{
	"header":     "PCI-DSS network segmentation report",
	"policy-set": "Policy set",
	"policies":   "Policies and their PCI-DSS requirements",
	"allowances": "Effective allowances",
	"live":       "Live enforcement",
	"unmatched":  "Policies without a match in the reporting window",
	"overrides":  "Development overrides",
	"privilege":  "Privilege model",
	"audit":      "Audit log",
}

// The HTML, rendered by a real browser (Debian's chromium, headless):
// a screenshot is taken, and the page the browser built holds every
// section, no template marker and no empty cell, running and stopped.
func TestHTMLRendersInChromium(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
		}
	}
	if browser == "" {
		testenv.Unavailable(t, "chromium not installed (Debian package chromium)")
	}
	f := newFixture(t)
	for name, st := range map[string]*status.Status{"running": f.running, "stopped": f.stopped} {
		t.Run(name, func(t *testing.T) {
			r := f.build(st)
			dir := t.TempDir()
			page := filepath.Join(dir, "report.html")
			var buf bytes.Buffer
			if err := r.WriteHTML(&buf); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(page, buf.Bytes(), 0o644)
			shot := filepath.Join(dir, "report.png")
			dom := run(t, browser, "--dump-dom", "file://"+page)
			run(t, browser, "--screenshot="+shot, "--window-size=1200,4000", "file://"+page)

			img, err := os.Open(shot)
			if err != nil {
				t.Fatalf("no screenshot: %v", err)
			}
			defer img.Close()
			cfg, err := png.DecodeConfig(img)
			if err != nil || cfg.Width != 1200 || cfg.Height != 4000 {
				t.Errorf("screenshot %dx%d (%v), want the 1200x4000 window", cfg.Width, cfg.Height, err)
			}
			if st, _ := os.Stat(shot); st == nil || st.Size() < 20_000 {
				t.Errorf("screenshot of %v bytes: the page rendered nothing", st.Size())
			}
			for id, heading := range sections {
				if !strings.Contains(dom, `id="`+id+`"`) || !strings.Contains(dom, heading) {
					t.Errorf("the rendered page lacks section %s (%q)", id, heading)
				}
			}
			for _, marker := range []string{"{{", "}}", "<no value>", "%!", "ZgotmplZ", "map[", "<nil>"} {
				if strings.Contains(dom, marker) {
					t.Errorf("the rendered page holds %q", marker)
				}
			}
			if m := regexp.MustCompile(`<td[^>]*>\s*</td>`).FindString(dom); m != "" {
				t.Errorf("the rendered page holds an empty cell: %s", m)
			}
			if name == "stopped" && !strings.Contains(dom, "Enforcement is not running.") {
				t.Error("the stopped report does not say enforcement is not running")
			}
		})
	}
}

// run runs the headless browser and returns its standard output.
func run(t *testing.T, browser string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// No sandbox: the tests run as root, which chromium's sandbox refuses;
	// the page is our own file.
	cmd := exec.CommandContext(ctx, browser, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
		"--user-data-dir=" + t.TempDir(), "--hide-scrollbars"}, args...)...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", browser, args, err, errs.String())
	}
	return out.String()
}
