#!/usr/bin/env bash
# Build and load the pci-segment SELinux module (selinux/), label the files
# and the metrics port, as docs/HARDENING.md describes. Needs root and the
# policy development files (RHEL: selinux-policy-devel; Debian:
# selinux-policy-dev).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${PCI_SEGMENT_METRICS_PORT:-9720}
makefile=/usr/share/selinux/devel/Makefile
[[ -f $makefile ]] || { echo "install-selinux: $makefile missing: install selinux-policy-devel (RHEL) or selinux-policy-dev (Debian)" >&2; exit 1; }
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp "$here"/selinux/pci_segment.{te,fc,if} "$build"/
make -C "$build" -f "$makefile" pci_segment.pp
# The module, and the pins' label by path (bpffs has no xattrs: genfscon).
semodule -i "$build/pci_segment.pp" -i "$here/selinux/pci_segment_pins.cil"
semanage port -a -t pci_segment_port_t -p tcp "$port" 2>/dev/null || semanage port -m -t pci_segment_port_t -p tcp "$port"
for p in /usr/local/bin/pci-segment /usr/bin/pci-segment /usr/local/bin/pci-segment-loader /usr/bin/pci-segment-loader /etc/pci-segment /var/log/pci-segment /var/lib/pci-segment /var/lib/pci-segment-keys; do
	[[ -e $p ]] && restorecon -Rv "$p"
done
echo "install-selinux: pci_segment loaded; the loader runs in pci_segment_t, the worker in pci_segment_worker_t"
