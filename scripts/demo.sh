#!/usr/bin/env bash
# demo.sh: pci-segment enforcing a segmentation policy on a throw-away lab.
#
# Builds two network namespaces joined by a veth pair (the same addressing as
# the Go test lab, package lab):
#
#   host ns  vhd<id>  10.77.1.1/24  fd00:77:1::1/64           labels pci-env=cde,role=web
#   peer ns  vpd<id>  10.77.1.2/24  fd00:77:1::2/64
#                     10.77.2.2/24  fd00:77:2::2/64           (outside the host's subnet)
#
# then validates a policy, enforces it on the host end of the veth, shows
# which connections pass and which are dropped, shows the privilege split,
# the audit log, that pinned links keep enforcing after the processes stop,
# and that `detach` removes them. Every packet stays inside the two
# namespaces. Everything is removed on exit, also on failure.
#
# Run as root from the repository, after `make build` (or use `make demo`).
# Needs iproute2, util-linux (nsenter) and socat. PCI_SEGMENT_BIN overrides the
# binary (default bin/pci-segment; pci-segment-loader beside it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC_BIN=${PCI_SEGMENT_BIN:-$ROOT/bin/pci-segment}
LABELS=pci-env=cde,role=web
PROBE_TIMEOUT=2 # seconds without an answer that count as "dropped"

say() { printf '\n== %s\n' "$*"; }
info() { printf '   %s\n' "$*"; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}

(($(id -u) == 0)) || die "run as root (it creates network namespaces and loads eBPF)"
[[ -x $SRC_BIN && -x $SRC_BIN-loader ]] || die "$SRC_BIN or $SRC_BIN-loader not found: run 'make build' first (or 'make demo')"
for tool in ip nsenter socat timeout getent; do
	command -v "$tool" >/dev/null || die "$tool not found: run 'make deps'"
done

ID=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
HOST_NS=pcsdemo${ID}h
PEER_NS=pcsdemo${ID}p
VH=vhd$ID
VP=vpd$ID
DEMO=$(mktemp -d /tmp/pci-segment-demo.XXXXXX)
PIN_DIR=/sys/fs/bpf/pci-segment-demo-$ID
AUDIT_DIR=$DEMO/audit
STATE_DIR=$DEMO/state
KEY_DIR=$DEMO/keys
POLICY_DIR=$DEMO/policies
LOG=$DEMO/enforce.log
BIN=$DEMO/bin/pci-segment

ENFORCE_PID=
SERVER_PIDS=()
CREATED_USER=0
CREATED_GROUP=0
CREATED_HOME=0
FAILURES=0

cleanup() {
	local rc=$?
	set +e
	say "cleaning up"
	if [[ -n $ENFORCE_PID ]] && kill -0 "$ENFORCE_PID" 2>/dev/null; then
		info "stopping enforce (pid $ENFORCE_PID)"
		kill -TERM "$ENFORCE_PID"
		for _ in $(seq 50); do kill -0 "$ENFORCE_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$ENFORCE_PID" 2>/dev/null
		wait "$ENFORCE_PID" 2>/dev/null
	fi
	for pid in "${SERVER_PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	if [[ -n $(find "$PIN_DIR" -mindepth 1 ! -type d -print -quit 2>/dev/null) ]]; then
		info "detaching (pins left in $PIN_DIR)"
		nsenter --net="/run/netns/$HOST_NS" -- "$BIN" detach --pin-dir "$PIN_DIR" 2>&1 | sed 's/^/   /'
	fi
	# Unpinning releases whatever detach left.
	rm -rf "$PIN_DIR"
	for ns in "$PEER_NS" "$HOST_NS"; do
		[[ -e /run/netns/$ns ]] && ip netns delete "$ns" && info "deleted namespace $ns"
	done
	rm -rf "$DEMO"
	if ((CREATED_USER)); then
		info "removing the pci-segment service account the demo created"
		userdel pci-segment
		((CREATED_HOME)) && rm -rf /var/lib/pci-segment
	fi
	if ((CREATED_GROUP)) && getent group pci-segment >/dev/null; then
		groupdel pci-segment
	fi
	if ((rc == 0 && FAILURES > 0)); then
		rc=1
	fi
	if ((rc == 0)); then
		say "demo finished: every check behaved as the policy says"
	else
		say "demo FAILED (exit $rc)"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() {
	local ns=$1
	shift
	nsenter --net="/run/netns/$ns" -- "$@"
}

# ---------------------------------------------------------------- account
say "service account"
if getent passwd pci-segment >/dev/null; then
	info "pci-segment exists: $(id pci-segment)"
else
	info "pci-segment is missing: creating it with the hardening guide's commands (removed again at the end)"
	getent group pci-segment >/dev/null || CREATED_GROUP=1
	[[ -e /var/lib/pci-segment ]] || CREATED_HOME=1
	CREATED_USER=1
	groupadd --system pci-segment || true
	useradd \
		--system \
		--gid pci-segment \
		--home-dir /var/lib/pci-segment \
		--create-home \
		--shell /usr/sbin/nologin \
		pci-segment || true
	getent passwd pci-segment >/dev/null || die "could not create the pci-segment account"
	info "created: $(id pci-segment)"
fi

# The worker is started from the loader's own executable as pci-segment:
# give it a copy in a directory that account can reach, whatever the mode of
# the checkout.
chmod 0755 "$DEMO"
install -d -m 0755 "$DEMO/bin"
install -m 0755 "$SRC_BIN" "$BIN"
install -m 0755 "$SRC_BIN-loader" "$BIN-loader" # enforce runs it: the root half

# ---------------------------------------------------------------- bpffs
if [[ $(stat -f -c %T /sys/fs/bpf 2>/dev/null) != bpf_fs ]]; then
	say "mounting the BPF filesystem on /sys/fs/bpf (systemd does this at boot; it stays mounted)"
	mount -t bpf bpf /sys/fs/bpf
fi

# ---------------------------------------------------------------- lab
say "lab: namespaces $HOST_NS (host) and $PEER_NS (peer), veth $VH <-> $VP"
ip netns add "$HOST_NS"
ip netns add "$PEER_NS"
ip -n "$HOST_NS" link add "$VH" type veth peer name "$VP" netns "$PEER_NS"
ip -n "$HOST_NS" link set lo up
ip -n "$PEER_NS" link set lo up
ip -n "$HOST_NS" addr add 10.77.1.1/24 dev "$VH"
ip -n "$HOST_NS" addr add fd00:77:1::1/64 dev "$VH" nodad
ip -n "$PEER_NS" addr add 10.77.1.2/24 dev "$VP"
ip -n "$PEER_NS" addr add 10.77.2.2/24 dev "$VP"
ip -n "$PEER_NS" addr add fd00:77:1::2/64 dev "$VP" nodad
ip -n "$PEER_NS" addr add fd00:77:2::2/64 dev "$VP" nodad
ip -n "$HOST_NS" link set "$VH" up
ip -n "$PEER_NS" link set "$VP" up
ip -n "$HOST_NS" route add 10.77.2.0/24 via 10.77.1.2 dev "$VH"
ip -n "$HOST_NS" -6 route add fd00:77:2::/64 via fd00:77:1::2 dev "$VH"
for _ in $(seq 100); do
	if ip -n "$HOST_NS" -o link show dev "$VH" | grep -q 'state UP' &&
		ip -n "$PEER_NS" -o link show dev "$VP" | grep -q 'state UP' &&
		[[ $(ip -n "$HOST_NS" -o -6 addr show dev "$VH" tentative) != *fd00:* ]] &&
		[[ $(ip -n "$PEER_NS" -o -6 addr show dev "$VP" tentative) != *fd00:* ]]; then
		break
	fi
	sleep 0.1
done
ip -n "$HOST_NS" -br addr show dev "$VH" | sed 's/^/   host: /'
ip -n "$PEER_NS" -br addr show dev "$VP" | sed 's/^/   peer: /'

# Echo servers: on the host (behind the policy) TCP 443 and 22, both
# families; on the peer TCP 443 and 22 and a UDP echo on 53 standing in for
# a DNS resolver.
serve() {
	local ns=$1
	shift
	# nsenter execs socat: $! is the server itself.
	nsenter --net="/run/netns/$ns" -- socat "$@" PIPE 2>/dev/null &
	SERVER_PIDS+=($!)
}
serve "$HOST_NS" TCP6-LISTEN:443,ipv6only=0,reuseaddr,fork
serve "$HOST_NS" TCP6-LISTEN:22,ipv6only=0,reuseaddr,fork
serve "$PEER_NS" TCP6-LISTEN:443,ipv6only=0,reuseaddr,fork
serve "$PEER_NS" TCP6-LISTEN:22,ipv6only=0,reuseaddr,fork
serve "$PEER_NS" UDP4-RECVFROM:53,bind=10.77.1.2,fork
serve "$PEER_NS" "UDP6-RECVFROM:53,bind=[fd00:77:1::2],fork"
for _ in $(seq 50); do
	[[ $(in_ns "$HOST_NS" ss -Hltn | wc -l) -ge 2 && $(in_ns "$PEER_NS" ss -Hltn | wc -l) -ge 2 &&
		$(in_ns "$PEER_NS" ss -Hlun | wc -l) -ge 2 ]] && break
	sleep 0.1
done

# probe PROTO NS SRC DST PORT: one echo round trip with socat. Prints and
# returns "open" (the echo came back), "dropped" (no answer within
# PROBE_TIMEOUT) or "refused"/"error: ..." (an answer that was no echo).
probe() {
	local proto=$1 ns=$2 src=$3 dst=$4 port=$5 out addr=$4 opts
	[[ $dst == *:* ]] && addr="[$dst]"
	if [[ $proto == tcp ]]; then
		opts="TCP:$addr:$port,connect-timeout=$PROBE_TIMEOUT"
	else
		opts="UDP:$addr:$port"
	fi
	if [[ -n $src ]]; then
		[[ $src == *:* ]] && src="[$src]"
		opts+=",bind=$src"
	fi
	local msg=pci-segment-demo-$RANDOM
	out=$(echo "$msg" | timeout $((PROBE_TIMEOUT + 3)) \
		nsenter --net="/run/netns/$ns" -- socat -T"$PROBE_TIMEOUT" -t"$PROBE_TIMEOUT" - "$opts" 2>&1) || true
	case $out in
	"$msg") echo open ;;
	"" | *"timed out"*) echo dropped ;; # no reply at all: socat's -T ran out
	*refused*) echo refused ;;
	*) echo "error: $(tail -n1 <<<"$out")" ;;
	esac
}

# expect WANT DESCRIPTION PROBE-ARGS...: WANT is open or dropped.
expect() {
	local want=$1 what=$2 got
	shift 2
	got=$(probe "$@")
	if [[ $want == open && $got == open ]]; then
		printf '   [ALLOWED]  %-46s connected, echo came back\n' "$what"
	elif [[ $want == dropped && $got == dropped ]]; then
		printf '   [DROPPED]  %-46s no answer in %ss: dropped\n' "$what" "$PROBE_TIMEOUT"
	else
		printf '   [UNEXPECTED] %-44s %s, expected %s\n' "$what" "$got" "$want"
		FAILURES=$((FAILURES + 1))
	fi
}

say "before enforcing, everything connects"
expect open "TCP 22   peer 10.77.1.2 -> host 10.77.1.1" tcp "$PEER_NS" "" 10.77.1.1 22
expect open "TCP 443  peer 10.77.2.2 -> host 10.77.1.1" tcp "$PEER_NS" 10.77.2.2 10.77.1.1 443
expect open "TCP 22   host 10.77.1.1 -> peer 10.77.1.2" tcp "$HOST_NS" "" 10.77.1.2 22
((FAILURES == 0)) || die "the lab itself does not pass traffic; nothing to demonstrate"

# ---------------------------------------------------------------- policy
say "policy ($POLICY_DIR/cde-web.yaml)"
install -d -m 0755 "$POLICY_DIR"
cat >"$POLICY_DIR/cde-web.yaml" <<'EOF'
# Demo: the web tier of a cardholder data environment.
apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: demo-cde-web
  annotations:
    pci-dss/requirement: "1.3.1, 1.3.2"
spec:
  podSelector:
    matchLabels:
      pci-env: cde
      role: web
  policyTypes: [Ingress, Egress]
  ingress:
    # HTTPS from the web subnet only.
    - from:
        - ipBlock:
            cidr: 10.77.1.0/24
        - ipBlock:
            cidr: fd00:77:1::/64
      ports:
        - protocol: TCP
          port: 443
  egress:
    # DNS and HTTPS to one server.
    - to:
        - ipBlock:
            cidr: 10.77.1.2/32
        - ipBlock:
            cidr: fd00:77:1::2/128
      ports:
        - protocol: UDP
          port: 53
        - protocol: TCP
          port: 443
EOF
# The worker reads the policies as the service account.
chmod 0644 "$POLICY_DIR/cde-web.yaml"
sed 's/^/   /' "$POLICY_DIR/cde-web.yaml"

say "pci-segment validate -f $POLICY_DIR --labels $LABELS"
rc=0
"$BIN" validate -f "$POLICY_DIR" --labels "$LABELS" 2>&1 | sed 's/^/   /' || rc=${PIPESTATUS[0]}
((rc == 0)) || die "validate exited $rc"
info "valid (exit 0)"

# ---------------------------------------------------------------- enforce
say "pci-segment enforce, inside the host namespace"
ENFORCE=("$BIN" enforce -f "$POLICY_DIR" --interface "$VH" --labels "$LABELS"
	--pin-dir "$PIN_DIR" --audit-dir "$AUDIT_DIR" --state-dir "$STATE_DIR" --key-dir "$KEY_DIR"
	--metrics-addr 127.0.0.1:9720)
info "nsenter --net=/run/netns/$HOST_NS -- ${ENFORCE[*]}"
nsenter --net="/run/netns/$HOST_NS" -- "${ENFORCE[@]}" >"$LOG" 2>&1 &
ENFORCE_PID=$!
show_log() {
	if [[ -s $LOG ]]; then
		sed 's/^/   log: /' "$LOG"
	else
		info "(enforce has logged nothing)"
	fi
}
for i in $(seq 300); do
	grep -q enforcing "$LOG" && break
	if ! kill -0 "$ENFORCE_PID" 2>/dev/null; then
		show_log
		die "enforce exited before it was enforcing"
	fi
	((i < 300)) || {
		show_log
		die "enforce did not log 'enforcing' within 30 s"
	}
	sleep 0.1
done
show_log

say "traffic under the policy"
expect open "ingress TCP 443  10.77.1.2 -> 10.77.1.1" tcp "$PEER_NS" "" 10.77.1.1 443
expect dropped "ingress TCP 22   10.77.1.2 -> 10.77.1.1" tcp "$PEER_NS" "" 10.77.1.1 22
expect dropped "ingress TCP 443  10.77.2.2 -> 10.77.1.1" tcp "$PEER_NS" 10.77.2.2 10.77.1.1 443
expect open "ingress TCP 443  fd00:77:1::2 -> fd00:77:1::1" tcp "$PEER_NS" "" fd00:77:1::1 443
expect open "egress  UDP 53   10.77.1.1 -> 10.77.1.2" udp "$HOST_NS" "" 10.77.1.2 53
expect open "egress  TCP 443  10.77.1.1 -> 10.77.1.2" tcp "$HOST_NS" "" 10.77.1.2 443
expect dropped "egress  TCP 22   10.77.1.1 -> 10.77.1.2" tcp "$HOST_NS" "" 10.77.1.2 22

say "privilege split (the guide's check: ps -o user,group,cap_eff,cmd -C pci-segment)"
WORKER_PID=$(pgrep -P "$ENFORCE_PID" -x pci-segment | head -n1 || true)
PIDS=$ENFORCE_PID${WORKER_PID:+,$WORKER_PID}
if ps -o cap_eff= -p $$ >/dev/null 2>&1; then
	ps -o pid,user,group,cap_eff,cmd -p "$PIDS" | sed 's/^/   /'
else
	# procps before 4.0.3 (Debian 12) has no cap_eff column: same table
	# from /proc.
	info "(this ps has no cap_eff column; the same from /proc)"
	printf '   %7s %-12s %-12s %-16s %s\n' PID USER GROUP CAP_EFF CMD
	for pid in ${PIDS//,/ }; do
		printf '   %7s %-12s %-12s %-16s %s\n' "$pid" "$(ps -o user= -p "$pid")" \
			"$(ps -o group= -p "$pid")" "$(awk '$1 == "CapEff:" { print $2 }' "/proc/$pid/status")" \
			"$(ps -o args= -p "$pid")"
	done
fi
if [[ -n $WORKER_PID ]]; then
	info "worker (pid $WORKER_PID), /proc/$WORKER_PID/status:"
	grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):' "/proc/$WORKER_PID/status" | sed 's/^/     /'
	info "loader (pid $ENFORCE_PID), /proc/$ENFORCE_PID/status:"
	grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' "/proc/$ENFORCE_PID/status" | sed 's/^/     /'
else
	info "no worker process found under the loader (pid $ENFORCE_PID)"
	FAILURES=$((FAILURES + 1))
fi
say "the same in one command: pci-segment status"
if ! "$BIN" status --pin-dir "$PIN_DIR" --state-dir "$STATE_DIR" | sed 's/^/   /'; then
	info "status failed"
	FAILURES=$((FAILURES + 1))
fi

say "audit log ($AUDIT_DIR)"
mapfile -t audit_files < <(find "$AUDIT_DIR" -type f 2>/dev/null | sort)
if ((${#audit_files[@]} == 0)); then
	info "no audit file found"
	FAILURES=$((FAILURES + 1))
fi
for f in "${audit_files[@]}"; do
	info "$f (last lines):"
	tail -n 5 "$f" | sed 's/^/     /'
done

say "evidence for an assessor: pci-segment report"
REPORT=$DEMO/report.html
if "$BIN" report -f "$POLICY_DIR" --labels "$LABELS" --pin-dir "$PIN_DIR" --state-dir "$STATE_DIR" \
	--audit-dir "$AUDIT_DIR" --key "$KEY_DIR" -o "$REPORT.json" &&
	"$BIN" report -f "$POLICY_DIR" --labels "$LABELS" --pin-dir "$PIN_DIR" --state-dir "$STATE_DIR" \
		--audit-dir "$AUDIT_DIR" --key "$KEY_DIR" -o "$REPORT"; then
	info "$REPORT ($(wc -c <"$REPORT") bytes, one self-contained page) and $REPORT.json; from the JSON:"
	grep -E '^    "(generation|set_sha256|matches_files|running|result|records|keyed)"' "$REPORT.json" | sed 's/^ */     /'
	grep -q '"matches_files": true' "$REPORT.json" || { info "the report does not find the files' set in force"; FAILURES=$((FAILURES + 1)); }
else
	info "report failed"
	FAILURES=$((FAILURES + 1))
fi

# ---------------------------------------------------------------- fail closed
say "stopping enforce (SIGTERM): the pinned links keep enforcing"
kill -TERM "$ENFORCE_PID"
wait "$ENFORCE_PID" || info "enforce exited $?"
ENFORCE_PID=
tail -n 3 "$LOG" | sed 's/^/   log: /'
running=0
for pid in ${PIDS//,/ }; do
	if kill -0 "$pid" 2>/dev/null; then
		info "pid $pid is still running"
		running=1
		FAILURES=$((FAILURES + 1))
	fi
done
((running)) || info "the demo's pci-segment processes ($PIDS) have exited"
expect dropped "ingress TCP 22   10.77.1.2 -> 10.77.1.1" tcp "$PEER_NS" "" 10.77.1.1 22
expect open "ingress TCP 443  10.77.1.2 -> 10.77.1.1" tcp "$PEER_NS" "" 10.77.1.1 443

say "pci-segment detach --pin-dir $PIN_DIR"
nsenter --net="/run/netns/$HOST_NS" -- "$BIN" detach --pin-dir "$PIN_DIR" 2>&1 | sed 's/^/   /'
expect open "ingress TCP 22   10.77.1.2 -> 10.77.1.1" tcp "$PEER_NS" "" 10.77.1.1 22
expect open "egress  TCP 22   10.77.1.1 -> 10.77.1.2" tcp "$HOST_NS" "" 10.77.1.2 22
