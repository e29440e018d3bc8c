#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# virtio-net multi-queue: a 2-vCPU guest gets two queue pairs and the control queue, which
# bulkhead-vmm serves itself; Linux's virtio_net driver turns both pairs on through it.
#  1. --net tap=NAME, isolated mode: `ethtool -l` shows 2 combined channels; iperf3 with
#     16 parallel flows from the test host into the guest: `ethtool -S` shows packets
#     on both receive queues (bulkhead-net spreads flows by hash), and both queues'
#     interrupts fired; then `ethtool -L eth0 combined 1` (a VQ_PAIRS_SET command): the
#     VMM logs it, and the second receive queue gets no more packets while traffic goes on.
#  2. two 2-vCPU VMs on a bulkhead-net switch with --queue-pairs 2, shared memory mode:
#     iperf3 with 16 flows between them, packets on both receive queues.
# Why 16 flows: bulkhead-net's flow hash is keyed at random per run, so each flow lands on
# either queue with even odds; four flows all landed on one queue about one run in eight
# (seen in a suite run), 16 do about once in 30000.
# timeout: 900
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-net"
command -v iperf3 >/dev/null || fail "iperf3 is not installed"

dir=$(mktemp -d /tmp/netmq-e2e.XXXXXX) || fail "mktemp"
NS=bhmq$$
bg=()
cleanup() {
    local p
    for p in "${bg[@]}"; do { kill -KILL "$p"; wait "$p"; } 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# The guest prints "rxq N PACKETS" per receive queue (ethtool -S's per-queue counters).
rxq_fn='rxq() { ethtool -S eth0 | sed -n "s/^ *rx_queue_\([0-9]*\)_packets: \([0-9]*\)/rxq \1 \2/p"; }'

# ---- 1. tap uplink, isolated mode ----------------------------------------------------
ip netns add "$NS" || fail "cannot create a network namespace"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip tuntap add dev bh0 mode tap || fail "cannot create a tap"
ip netns exec "$NS" ip addr add 10.0.0.1/24 dev bh0
ip netns exec "$NS" ip link set bh0 up
ip netns exec "$NS" iperf3 -s -D --logfile "$dir/iperf3-server.log" || fail "iperf3 server"

body=$(cat <<GUEST
ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
$rxq_fn
ethtool -l eth0 | sed -n '/^Current/,\$s/^Combined:[[:space:]]*/combined /p'
for i in \$(seq 50); do ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1 && break; done
iperf3 -c 10.0.0.1 -t 4 -P 16 -R >/tmp/i1.log && echo iperf-mq-ok && grep SUM.*receiver /tmp/i1.log
rxq | sed 's/^/before /'
grep -E 'virtio[0-9]+-input' /proc/interrupts | sed 's/^/irq /'
ethtool -L eth0 combined 1 && echo set-one-ok
ethtool -l eth0 | sed -n '/^Current/,\$s/^Combined:[[:space:]]*/combined /p'
grep -E 'virtio[0-9]+-input' /proc/interrupts | sed 's/^/irq1 /'
iperf3 -c 10.0.0.1 -t 4 -P 16 -R >/tmp/i2.log && echo iperf-one-ok && grep SUM.*receiver /tmp/i2.log
rxq | sed 's/^/after /'
grep -E 'virtio[0-9]+-input' /proc/interrupts | sed 's/^/irq2 /'
GUEST
)
LOG=$E2E_LOGS/netmq-tap.log
rm -f "$LOG"
guest_run 400 "$LOG" ip netns exec "$NS" "$VMM" --kernel "$GUEST_KERNEL" \
    --initrd "$GUEST_TOOLS_INITRD" --mem 384M --cpus 2 --log-level info --net tap=bh0 \
    --cmdline "$APPEND_BASE -- $(guest_script "$body")"
expect_status $? 0 "bulkhead-vmm (net, tap, 2 queue pairs)"
sed -i 's/\r$//' "$LOG"
expect_guest_exit "$LOG" 0
expect_in "$LOG" 'net0: vhost-user backend .*isolated memory.*, 4 queue'
for m in iperf-mq-ok set-one-ok iperf-one-ok; do expect_in "$LOG" "^$m\$"; done
expect_in "$LOG" 'net0: the driver uses 2 of 2 queue pairs'
expect_in "$LOG" 'net0: the driver uses 1 of 2 queue pairs'
[ "$(grep -c '^combined 2$' "$LOG")" = 1 ] || fail "ethtool -l did not show 2 combined channels first"
grep -q '^combined 1$' "$LOG" || fail "ethtool -l did not show 1 combined channel after -L"
rx() { sed -n "s/^$1 rxq $2 \([0-9]*\)$/\1/p" "$LOG"; }
# irqs TAG Q: receive queue Q's interrupts, all CPUs, in the /proc/interrupts lines TAG.
irqs() {
    grep -E "^$1 .*virtio[0-9]+-input\.$2\$" "$LOG" | awk '{ for (i = 3; i <= NF - 3; i++) s += $i } END { print s + 0 }'
}
b0=$(rx before 0) b1=$(rx before 1) a0=$(rx after 0)
[ -n "$b0" ] && [ -n "$b1" ] && [ -n "$a0" ] || fail "no per-queue counters from ethtool -S"
[ "$b0" -gt 100 ] && [ "$b1" -gt 100 ] ||
    fail "16 flows did not reach both receive queues (rx_queue_0 $b0, rx_queue_1 $b1 packets)"
[ "$((a0 - b0))" -gt 100 ] || fail "receive queue 0 got only $((a0 - b0)) packets with one pair"
for q in 0 1; do
    [ "$(irqs irq "$q")" -gt 0 ] || fail "no interrupt on receive queue $q"
done
# With one pair, the second receive queue gets nothing: no interrupt during the traffic.
i1=$(irqs irq1 1) i2=$(irqs irq2 1)
[ "$i1" = "$i2" ] || fail "receive queue 1 interrupted $((i2 - i1)) times after it was turned off"
note "tap, isolated: 2 pairs, rx packets queue 0/1: $b0/$b1; after combined 1: queue 0 +$((a0 - b0)), queue 1 no interrupt"
grep 'SUM.*receiver' "$LOG" | sed 's/^/  /' >&2

# ---- 2. VM to VM through a switch, shared memory -------------------------------------
mkdir -p "$dir/sw"
"$BUILD/bulkhead-net" --port "$dir/sw/p1" --port "$dir/sw/p2" --queue-pairs 2 --log-level info \
    >"$dir/sw.log" 2>&1 &
bg+=($!)
for _ in $(seq 100); do [ -S "$dir/sw/p2" ] && break; sleep 0.05; done
[ -S "$dir/sw/p2" ] || { show_log "$dir/sw.log"; fail "bulkhead-net did not listen"; }

run_bg() { # NAME SOCKET IP BODY
    local log=$E2E_LOGS/$1.log
    rm -f "$log"
    run_timeout 400 "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
        --mem 256M --cpus 2 --log-level info --name "$1" --net "socket=$2,mode=shared" \
        --cmdline "$APPEND_BASE -- $(guest_script "ip link set eth0 up
ip addr add $3/24 dev eth0
$rxq_fn
$4")" >"$log" 2>&1 &
}
server_body='iperf3 -s -1 >/tmp/s.log 2>&1 &
for i in $(seq 900); do [ -e /tmp/s.log ] && ! kill -0 $! 2>/dev/null && break; sleep 0.2; done
rxq | sed "s/^/server /"
echo server-done'
client_body='for i in $(seq 60); do ping -c 1 -W 1 10.1.0.2 >/dev/null 2>&1 && break; done
iperf3 -c 10.1.0.2 -t 4 -P 16 -R >/tmp/c.log && echo peer-iperf-ok && grep SUM.*receiver /tmp/c.log
rxq | sed "s/^/client /"'
run_bg vm-s "$dir/sw/p2" 10.1.0.2 "$server_body"
s=$!
run_bg vm-c "$dir/sw/p1" 10.1.0.1 "$client_body"
c=$!
for p in "$c:vm-c" "$s:vm-s"; do
    wait "${p%%:*}"
    st=$?
    log=$E2E_LOGS/${p#*:}.log
    sed -i 's/\r$//' "$log"
    [ $st = 0 ] || { show_log "$log"; fail "${p#*:}: bulkhead-vmm exited with $st"; }
    expect_guest_exit "$log" 0
    expect_in "$log" 'net0: the driver uses 2 of 2 queue pairs'
done
expect_in "$E2E_LOGS/vm-c.log" '^peer-iperf-ok$'
expect_in "$E2E_LOGS/vm-c.log" 'net0: vhost-user backend .*shared memory, 4 queue'
c0=$(sed -n 's/^client rxq 0 \([0-9]*\)$/\1/p' "$E2E_LOGS/vm-c.log")
c1=$(sed -n 's/^client rxq 1 \([0-9]*\)$/\1/p' "$E2E_LOGS/vm-c.log")
[ "${c0:-0}" -gt 100 ] && [ "${c1:-0}" -gt 100 ] ||
    fail "16 flows between the VMs did not reach both receive queues ($c0/$c1)"
note "switch, shared: 2 pairs each, client rx packets queue 0/1: $c0/$c1"
grep 'SUM.*receiver' "$E2E_LOGS/vm-c.log" | sed 's/^/  /' >&2
pass "virtio-net multi-queue: control queue in the VMM, flows over both pairs, pairs turned off"
