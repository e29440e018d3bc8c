#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# virtio-net behind bulkhead-net, with Linux's virtio_net driver, ping, iperf3 and ethtool
# in the guest:
#  1. --net tap=NAME (bulkhead-vmm starts bulkhead-net with the tap as uplink), the tap in
#     a network namespace of the test host: ping with 8000-byte packets and iperf3 TCP both
#     ways; `ethtool -k` in the guest shows the offloads on; a capture on the tap sees TCP
#     segments larger than the MTU (the 64 KiB segments crossed whole); then bulkhead-net is
#     killed with SIGKILL under iperf3: the VMM starts it again and iperf3 finishes.
#  2. two VMs on a bulkhead-net switch: ping and iperf3 between them; a third VM on another
#     switch, in the same subnet, cannot reach them.
#  3. the same two VMs on a point-to-point bulkhead-net (--mode p2p), shared memory mode.
# timeout: 900
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-net"
command -v tcpdump >/dev/null || fail "tcpdump is not installed"
command -v iperf3 >/dev/null || fail "iperf3 is not installed"

dir=$(mktemp -d /tmp/net-e2e.XXXXXX) || fail "mktemp"
NS=bhnet$$
bg=()
cleanup() {
    local p
    for p in "${bg[@]}"; do { kill -KILL "$p"; wait "$p"; } 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# guest_net_script IP BODY: bring eth0 up with IP/24, then BODY.
guest_net_script() {
    printf 'ip link set eth0 up\nip addr add %s/24 dev eth0\n%s\n' "$1" "$2"
}

# ---- 1. tap uplink in a namespace ----------------------------------------------------
ip netns add "$NS" || fail "cannot create a network namespace"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip tuntap add dev bh0 mode tap || fail "cannot create a tap"
ip netns exec "$NS" ip addr add 10.0.0.1/24 dev bh0
ip netns exec "$NS" ip link set bh0 up
ip netns exec "$NS" iperf3 -s -D --logfile "$dir/iperf3-server.log" || fail "iperf3 server"

body=$(cat <<'GUEST'
ethtool -k eth0 | grep -E '^(tcp-segmentation-offload|tx-checksumming|rx-checksumming):'
for i in $(seq 50); do ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1 && break; done
ping -c 3 -s 8000 10.0.0.1 >/tmp/ping.log && echo ping-big-ok
iperf3 -c 10.0.0.1 -t 4 >/tmp/i1.log && echo iperf-tx-ok && grep receiver /tmp/i1.log
iperf3 -c 10.0.0.1 -t 4 -R >/tmp/i2.log && echo iperf-rx-ok && grep receiver /tmp/i2.log
echo kill-now
iperf3 -c 10.0.0.1 -t 12 >/tmp/i3.log && echo iperf-survived && grep receiver /tmp/i3.log
GUEST
)
LOG=$E2E_LOGS/net-tap.log
rm -f "$LOG"
ip netns exec "$NS" timeout 120 tcpdump -i bh0 -nn -c 400 -w "$dir/cap.pcap" tcp 2>"$dir/tcpdump.err" &
bg+=($!)
# The killer: once the guest says so, SIGKILL the bulkhead-net child mid-iperf3.
(
    wait_log '^kill-now' 400 || exit 0
    sleep 4
    for p in /proc/[0-9]*; do
        case $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) in
        */bulkhead-net\ *--tap\ bh0*) kill -KILL "${p#/proc/}" && echo "killed ${p#/proc/}" ;;
        esac
    done >"$dir/killed"
) &
killer=$!
bg+=($killer)
guest_run 500 "$LOG" ip netns exec "$NS" "$VMM" --kernel "$GUEST_KERNEL" \
    --initrd "$GUEST_TOOLS_INITRD" --mem 384M --log-level info --net tap=bh0 \
    --cmdline "$APPEND_BASE -- $(guest_script "$(guest_net_script 10.0.0.2 "$body")")"
expect_status $? 0 "bulkhead-vmm (net, tap)"
wait "$killer"
expect_guest_exit "$LOG" 0
expect_in "$LOG" '^tcp-segmentation-offload: on'
expect_in "$LOG" '^tx-checksumming: on'
for m in ping-big-ok iperf-tx-ok iperf-rx-ok iperf-survived; do expect_in "$LOG" "^$m\$"; done
grep -q '^killed ' "$dir/killed" || fail "the bulkhead-net child was not found to be killed"
expect_in "$LOG" 'net0: .*(starting it again|restart)'
expect_in "$LOG" 'net0: vhost-user backend .*isolated memory'
expect_not_in "$LOG" 'needs a reset'
# Segments larger than the 1500-byte MTU reached the tap whole.
big=$(tcpdump -nn -r "$dir/cap.pcap" 2>/dev/null |
    awk '{ for (i = 1; i < NF; i++) if ($i == "length") { n = $(i + 1) + 0; if (n > 1500) c++ } } END { print c + 0 }')
[ "$big" -gt 0 ] || fail "the capture on the tap holds no TCP segment larger than the MTU"
note "tap: ping 8000 B, iperf3 both ways, offloads on, $big segments > MTU on the tap, survived kill -9: ok"
grep receiver "$LOG" | sed 's/^/  /' >&2

# ---- 2. two VMs on a switch, a third on another --------------------------------------
run_bg() { # NAME NETOPT IP BODY: boot a guest in the background; its log is E2E_LOGS/NAME.log
    local log=$E2E_LOGS/$1.log
    rm -f "$log"
    run_timeout 300 "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
        --mem 256M --log-level info --name "$1" --net "$2" \
        --cmdline "$APPEND_BASE -- $(guest_script "$(guest_net_script "$3" "$4")")" \
        >"$log" 2>&1 &
}
wait_ok() { # PID NAME
    wait "$1"
    local st=$?
    sed -i 's/\r$//' "$E2E_LOGS/$2.log"
    [ $st = 0 ] || { show_log "$E2E_LOGS/$2.log"; fail "$2: bulkhead-vmm exited with $st"; }
    expect_guest_exit "$E2E_LOGS/$2.log" 0
}

switch() { # DIR [ARGS...]: a bulkhead-net with two ports p1, p2 in DIR
    local d=$1
    shift
    mkdir -p "$d"
    "$BUILD/bulkhead-net" --port "$d/p1" --port "$d/p2" --log-level info "$@" >"$d.log" 2>&1 &
    bg+=($!)
    for _ in $(seq 100); do [ -S "$d/p2" ] && break; sleep 0.05; done
    [ -S "$d/p2" ] || { show_log "$d.log"; fail "bulkhead-net did not listen on $d"; }
}

server_body='iperf3 -s -1 >/tmp/s.log 2>&1 &
for i in $(seq 600); do [ -e /tmp/s.log ] && ! kill -0 $! 2>/dev/null && break; sleep 0.2; done
echo server-done'
client_body='for i in $(seq 60); do ping -c 1 -W 1 10.1.0.2 >/dev/null 2>&1 && break; done
ping -c 3 -s 4000 10.1.0.2 >/dev/null && echo peer-ping-ok
iperf3 -c 10.1.0.2 -t 4 >/tmp/c.log && echo peer-iperf-ok && grep receiver /tmp/c.log'
lonely_body='sleep 8; ping -c 5 -W 1 10.1.0.2 >/dev/null 2>&1 || echo unreachable-ok'

switch "$dir/sw1"
switch "$dir/sw2"
run_bg vm-b "socket=$dir/sw1/p2" 10.1.0.2 "$server_body"
b=$!
run_bg vm-a "socket=$dir/sw1/p1" 10.1.0.1 "$client_body"
a=$!
run_bg vm-c "socket=$dir/sw2/p1" 10.1.0.3 "$lonely_body"
c=$!
wait_ok $a vm-a
wait_ok $b vm-b
wait_ok $c vm-c
expect_in "$E2E_LOGS/vm-a.log" '^peer-ping-ok$'
expect_in "$E2E_LOGS/vm-a.log" '^peer-iperf-ok$'
expect_in "$E2E_LOGS/vm-c.log" '^unreachable-ok$'
note "switch: two VMs ping and iperf3 each other; a VM on another switch cannot reach them: ok"
grep receiver "$E2E_LOGS/vm-a.log" | sed 's/^/  /' >&2

# ---- 3. point to point, shared memory ------------------------------------------------
switch "$dir/p2p" --mode p2p
run_bg vm-b2 "socket=$dir/p2p/p2,mode=shared" 10.1.0.2 "$server_body"
b=$!
run_bg vm-a2 "socket=$dir/p2p/p1,mode=shared" 10.1.0.1 "$client_body"
a=$!
wait_ok $a vm-a2
wait_ok $b vm-b2
expect_in "$E2E_LOGS/vm-a2.log" '^peer-ping-ok$'
expect_in "$E2E_LOGS/vm-a2.log" '^peer-iperf-ok$'
expect_in "$E2E_LOGS/vm-a2.log" 'net0: vhost-user backend .*shared memory'
note "point to point, shared memory: ping and iperf3: ok"
pass "virtio-net through bulkhead-net: tap uplink, switch, point to point, isolation, restart"
