# pci-segment build, test and demo entry points. Meant for Debian 12, as
# root (deps installs packages; the tests and the demo build network
# namespaces and load eBPF).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# Go as the project's machines install it, ahead of any other go on PATH.
export PATH := /usr/local/go/bin:$(PATH)
# libseccomp-golang needs cgo.
export CGO_ENABLED := 1
# Passed through to the tests: 1 turns "skip: needs root/eBPF" into a failure.
export PCI_SEGMENT_E2E

GO ?= go
# Debian packages the build, the tests and the demo use. .ci/run installs
# the same list.
DEBS := clang llvm libbpf-dev bpftool libseccomp-dev iproute2 gcc make pkg-config socat
# And for the tests only: a real Prometheus server and promtool, the
# security module tool chains, nftables and a browser for the report.
test: EXTRA_DEBS := prometheus apparmor selinux-policy-dev selinux-policy-default setools checkpolicy nftables chromium
# The oldest Go that builds the module: the go line of go.mod (1.26 or later).
GO_MIN := $(or $(shell awk '$$1 == "go" { print $$2; exit }' go.mod 2>/dev/null),1.26)
TEST_TIMEOUT ?= 30m
BIN := bin/pci-segment

.PHONY: deps generate generate-check build test bench demo install uninstall clean

deps:
	@missing=(); \
	for p in $(DEBS) $(EXTRA_DEBS); do \
		st=$$(dpkg-query -W -f='$${db:Status-Status}\n' "$$p" 2>/dev/null || true); \
		grep -qx installed <<<"$$st" || missing+=("$$p"); \
	done; \
	if (( $${#missing[@]} > 0 )); then \
		if (( $$(id -u) != 0 )); then \
			echo "deps: missing Debian packages: $${missing[*]}; run 'make deps' as root" >&2; \
			exit 1; \
		fi; \
		echo "deps: installing $${missing[*]}"; \
		apt-get update; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$${missing[@]}"; \
	fi; \
	if ! command -v $(GO) >/dev/null; then \
		echo "deps: Go not found in /usr/local/go/bin or on PATH. Install Go $(GO_MIN) or newer from https://go.dev/dl/ with 'tar -C /usr/local -xzf go$(GO_MIN).linux-amd64.tar.gz'." >&2; \
		exit 1; \
	fi; \
	have=$$(cd / && GOTOOLCHAIN=local $(GO) env GOVERSION); have=$${have#go}; \
	if [[ $$(printf '%s\n' "$(GO_MIN)" "$$have" | sort -V | head -n1) != "$(GO_MIN)" ]]; then \
		echo "deps: $$(command -v $(GO)) is Go $$have; pci-segment needs Go $(GO_MIN) or newer (go.mod). Install it from https://go.dev/dl/ into /usr/local/go." >&2; \
		exit 1; \
	fi

# bpf2go is a tool of the module (go.mod): go generate runs `go tool bpf2go`.
generate: deps
	$(GO) generate ./bpf/... ./bench/...

# The bpf2go output is committed so that `go build` needs no clang; this
# fails when regenerating it changes anything.
generate-check: generate
	@untracked=$$(git ls-files --others --exclude-standard -- bpf/ bench/); \
	if ! git diff --exit-code --stat -- bpf/ bench/ || [[ -n "$$untracked" ]]; then \
		[[ -z "$$untracked" ]] || printf 'not committed: %s\n' $$untracked; \
		echo "generate-check: the generated files in bpf/ or bench/ differ from what is committed. Run 'make generate' and commit them." >&2; \
		exit 1; \
	fi; \
	echo "generate-check: bpf/ and bench/ are up to date"

# pci-segment, and beside it pci-segment-loader, the root half of enforce,
# which links none of the YAML, HTTP, metrics or audit code.
# -buildvcs=auto: stamp the revision when built from a git checkout (so that
# --version and the report name the build), whatever GOFLAGS says, and
# build without it from a tarball.
build: deps
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/pci-segment
	$(GO) build -buildvcs=auto -o $(BIN)-loader ./cmd/pci-segment-loader

# Pins live on a BPF filesystem at /sys/fs/bpf. systemd mounts it at boot;
# a machine without systemd as PID 1 may not have it.
test: deps build
	@if (( $$(id -u) != 0 )); then \
		echo "test: not root: tests that need root will skip (or fail with PCI_SEGMENT_E2E=1)" >&2; \
	elif [[ $$(stat -f -c %T /sys/fs/bpf 2>/dev/null) != bpf_fs ]]; then \
		echo "test: mounting the BPF filesystem on /sys/fs/bpf"; \
		mount -t bpf bpf /sys/fs/bpf; \
	fi
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	@# A short run of the fuzzer over what a compromised worker can send.
	@# Counted, not timed: Go 1.26's coordinator can fail a timed run at its
	@# deadline with "context deadline exceeded" and no crasher (golang/go#75804).
	@# Minimizing a new input is bounded too: unbounded, it stalls a run a minute.
	$(GO) test -run '^$$' -fuzz '^FuzzLoaderDecode$$' -fuzztime 500000x -fuzzminimizetime 200x ./ipc
	$(GO) test -run '^$$' -fuzz '^FuzzLoaderRecv$$' -fuzztime 20000x -fuzzminimizetime 200x ./ipc
	$(GO) test -run '^$$' -fuzz '^FuzzParseContext$$' -fuzztime 20000x -fuzzminimizetime 200x ./selinux
	$(GO) test -run '^$$' -fuzz '^FuzzParseLabel$$' -fuzztime 20000x -fuzzminimizetime 200x ./apparmor

# Benchmarks against their targets and the alternatives (bench/): the
# per-packet cost, rates over veth against nftables, apply latency, memory
# and the audit log, each benchmark run once and repeating inside, its
# results in bench/results/, then BENCHMARKS.md written from them. About
# 15 minutes, most of it the veth rates.
bench: EXTRA_DEBS := iperf3 nftables
bench: deps
	rm -rf bench/results
	PCI_SEGMENT_BENCH_OUT=$(CURDIR)/bench/results $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench
	$(GO) run ./bench/report -in bench/results -o BENCHMARKS.md

demo: deps build
	PCI_SEGMENT_BIN=$(CURDIR)/$(BIN) bash scripts/demo.sh

# Installation, as the hardening guide lays it out (PREFIX /usr/local):
# the binary, the units, sysusers and tmpfiles entries, the SELinux and
# AppArmor drop-ins, example policies, the Prometheus rules and the docs.
# /etc/default/pci-segment is installed only when absent.
PREFIX ?= /usr/local
DESTDIR ?=
UNITDIR := $(PREFIX)/lib/systemd/system
SHAREDIR := $(PREFIX)/share/pci-segment
INSTALLED := $(PREFIX)/bin/pci-segment $(PREFIX)/bin/pci-segment-loader $(UNITDIR)/pci-segment.service $(UNITDIR)/pci-segment.socket \
	$(PREFIX)/lib/sysusers.d/pci-segment.conf $(PREFIX)/lib/tmpfiles.d/pci-segment.conf \
	$(SHAREDIR)/dropins/selinux.conf $(SHAREDIR)/dropins/apparmor.conf \
	$(SHAREDIR)/prometheus/alerts.yml $(SHAREDIR)/prometheus/scrape.yml \
	$(PREFIX)/share/doc/pci-segment/HARDENING.md

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/pci-segment
	install -D -m 0755 $(BIN)-loader $(DESTDIR)$(PREFIX)/bin/pci-segment-loader
	install -d $(DESTDIR)$(UNITDIR)
	@# The units name the binary and the docs under PREFIX.
	for u in pci-segment.service pci-segment.socket; do \
		sed 's#/usr/local#$(PREFIX)#g' systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u; \
	done
	install -D -m 0644 systemd/sysusers.d/pci-segment.conf $(DESTDIR)$(PREFIX)/lib/sysusers.d/pci-segment.conf
	install -D -m 0644 systemd/tmpfiles.d/pci-segment.conf $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/pci-segment.conf
	install -D -m 0644 -t $(DESTDIR)$(SHAREDIR)/dropins systemd/dropins/selinux.conf systemd/dropins/apparmor.conf
	install -D -m 0644 -t $(DESTDIR)$(SHAREDIR)/prometheus metrics/prometheus/alerts.yml metrics/prometheus/scrape.yml
	install -D -m 0644 -t $(DESTDIR)$(SHAREDIR)/examples/policies examples/policies/*.yaml
	install -D -m 0644 docs/HARDENING.md $(DESTDIR)$(PREFIX)/share/doc/pci-segment/HARDENING.md
	install -D -m 0644 -t $(DESTDIR)$(SHAREDIR)/selinux selinux/pci_segment.te selinux/pci_segment.fc selinux/pci_segment.if selinux/pci_segment_pins.cil
	install -D -m 0644 -t $(DESTDIR)$(SHAREDIR)/apparmor apparmor/pci-segment
	install -D -m 0755 -t $(DESTDIR)$(SHAREDIR)/scripts scripts/install-selinux.sh scripts/install-apparmor.sh
	[[ -e $(DESTDIR)/etc/default/pci-segment ]] || install -D -m 0644 systemd/pci-segment.default $(DESTDIR)/etc/default/pci-segment

# Leaves /etc (settings, policies), the logs and the state, and enforcement:
# run `pci-segment detach` first to remove that.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rm -rf $(DESTDIR)$(SHAREDIR)
	-rmdir $(DESTDIR)$(PREFIX)/share/doc/pci-segment 2>/dev/null

clean:
	rm -rf bin/
