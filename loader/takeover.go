package loader

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/pins"
)

// replaceWait bounds how long --replace waits for the running instance to
// let go of the pin directory once told to stop.
const replaceWait = 20 * time.Second

// claim takes the pin directory's single-instance lock. Under --replace it
// first stops the instance holding it (SIGTERM: the old loader stops its
// worker and exits, its pinned links enforcing all along).
func claim(cfg Config, log hclog.Logger) (*os.File, error) {
	lock, err := pins.Lock(cfg.PinDir)
	if !errors.Is(err, pins.ErrLocked) {
		return lock, err
	}
	holder := pins.Holder(cfg.PinDir)
	if !cfg.Replace || holder <= 0 {
		return nil, fmt.Errorf("%w: stop it first, or start this one with --replace to take over without a gap", err)
	}
	log.Info("replacing the running instance", "pid", holder, "pin_dir", cfg.PinDir)
	if err := syscall.Kill(holder, syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("stop the running instance (pid %d): %w", holder, err)
	}
	for deadline := time.Now().Add(replaceWait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if lock, err = pins.Lock(cfg.PinDir); !errors.Is(err, pins.ErrLocked) {
			return lock, err
		}
	}
	return nil, fmt.Errorf("the running instance (pid %d) kept %s for %v after SIGTERM", holder, cfg.PinDir, replaceWait)
}
