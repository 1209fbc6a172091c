#!/usr/bin/env bash
# Install and load the pci-segment AppArmor profile (apparmor/), with its
# child profile pci-segment//worker, as docs/HARDENING.md describes. Needs
# root and apparmor (apparmor_parser).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v apparmor_parser >/dev/null || { echo "install-apparmor: apparmor_parser missing: apt install apparmor apparmor-utils" >&2; exit 1; }
install -D -m 0644 "$here/apparmor/pci-segment" /etc/apparmor.d/pci-segment
apparmor_parser -r -W /etc/apparmor.d/pci-segment
echo "install-apparmor: pci-segment loaded (enforce); the worker runs in pci-segment//worker"
