#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# virtio-vsock behind bulkhead-vsock (started by bulkhead-vmm), with Linux's
# vmw_vsock_virtio_transport and socat in the guest, in the convention Firecracker and
# cloud-hypervisor users know:
#  - guest -> host: the guest connects to host port 1234 and reaches the unix socket
#    PATH_1234, sending 4 MiB (sha256-checked on the host);
#  - host -> guest: a host client connects to PATH, writes "CONNECT 5000", reads "OK ..."
#    and sends 3 MiB to the guest's listener (sha256-checked in the guest);
#  - many at once: 8 guest connections to PATH_1235, where each is answered with the
#    sha256 of what it sent;
#  - meanwhile a host listener (PATH_1236) that never reads holds a 16 MiB transfer: it
#    stalls only its own connection;
# in isolated mode, then the first two again in shared mode.
# timeout: 420
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-vsock"

dir=$(mktemp -d /tmp/vsock-e2e.XXXXXX) || fail "mktemp"
bg=()
cleanup() {
    local p
    for p in "${bg[@]}"; do { kill -KILL "$p"; wait "$p"; } 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT

script_full=$(cat <<'GUEST'
socat -u VSOCK-LISTEN:5000 CREATE:/tmp/in &
head -c 16777216 /dev/zero >/tmp/big
socat -u FILE:/tmp/big VSOCK-CONNECT:2:1236 &
stall=$!
head -c 4194304 /dev/urandom >/tmp/out
echo "out-sum $(sha256sum </tmp/out | cut -d' ' -f1)"
socat -u FILE:/tmp/out VSOCK-CONNECT:2:1234 && echo sent-4m
for i in 1 2 3 4 5 6 7 8; do
  head -c 1048576 /dev/urandom >/tmp/p$i
  (socat -t 20 - VSOCK-CONNECT:2:1235 </tmp/p$i >/tmp/r$i) &
done
wait_ok=1
for i in 1 2 3 4 5 6 7 8; do
  for t in $(seq 300); do [ -s /tmp/r$i ] && break; sleep 0.1; done
  [ "$(cut -d' ' -f1 /tmp/r$i)" = "$(sha256sum </tmp/p$i | cut -d' ' -f1)" ] || wait_ok=0
done
[ $wait_ok = 1 ] && echo parallel-ok
kill -0 $stall 2>/dev/null && echo stalled-still-waiting
kill $stall
echo ready-for-host
for t in $(seq 600); do [ -s /tmp/in ] && [ $(stat -c %s /tmp/in) = 3145728 ] && break; sleep 0.1; done
echo "in-sum $(sha256sum </tmp/in | cut -d' ' -f1)"
GUEST
)

# run_mode MODE SCRIPT: boot with a vsock device of CID 5 and serve the host side.
run_mode() {
    local mode=$1 script=$2 uds=$dir/v-$1.sock
    rm -f "$dir"/got "$dir"/reply
    # PATH_1234: what the guest sends, kept.
    socat -u UNIX-LISTEN:"${uds}_1234" CREATE:"$dir/got" &
    bg+=($!)
    # PATH_1235: each connection answered with the sha256 of what it carried.
    socat UNIX-LISTEN:"${uds}_1235",fork EXEC:sha256sum &
    bg+=($!)
    # PATH_1236: accepts and never reads.
    socat UNIX-LISTEN:"${uds}_1236",fork EXEC:"sleep 300" &
    bg+=($!)
    head -c 3145728 /dev/urandom >"$dir/hostdata"
    LOG=$E2E_LOGS/vsock-$mode.log
    rm -f "$LOG"
    # Host -> guest, once the guest is listening and says so.
    (
        wait_log '^ready-for-host' 240 || exit 0
        { printf 'CONNECT 5000\n'; sleep 1; cat "$dir/hostdata"; sleep 2; } |
            timeout 60 socat -t 5 - UNIX-CONNECT:"$uds" >"$dir/reply"
    ) &
    local host_pid=$!
    bg+=($host_pid)
    guest_run 300 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
        --mem 512M --cpus 2 --log-level info --vsock "cid=5,uds=$uds,mode=$mode" \
        --cmdline "$APPEND_BASE -- $(guest_script "$script")"
    expect_status $? 0 "bulkhead-vmm (vsock, $mode)"
    wait "$host_pid"
    expect_guest_exit "$LOG" 0
    expect_in "$LOG" '^sent-4m$'
    expect_in "$LOG" "vsock0: vhost-user backend .*$mode memory"
    expect_not_in "$LOG" 'error|needs a reset'
    local want
    want=$(sed -n 's/^out-sum \([0-9a-f]*\)$/\1/p' "$LOG")
    [ -n "$want" ] && [ "$(sha256sum <"$dir/got" | cut -d' ' -f1)" = "$want" ] ||
        fail "guest -> host: the 4 MiB arrived different ($mode; $(stat -c %s "$dir/got" 2>/dev/null) bytes)"
    grep -q '^OK ' "$dir/reply" || { show_log "$dir/reply"; fail "host -> guest: no OK after CONNECT ($mode)"; }
    expect_in "$LOG" "^in-sum $(sha256sum <"$dir/hostdata" | cut -d' ' -f1)\$"
    note "vsock, $mode: guest -> host 4 MiB, host -> guest 3 MiB, sha256 equal: ok"
}

run_mode isolated "$script_full"
expect_in "$LOG" '^parallel-ok$'
expect_in "$LOG" '^stalled-still-waiting$'
note "vsock, isolated: 8 connections at once while a never-reading host listener holds one: ok"
script_short=$(cat <<'GUEST'
socat -u VSOCK-LISTEN:5000 CREATE:/tmp/in &
head -c 4194304 /dev/urandom >/tmp/out
echo "out-sum $(sha256sum </tmp/out | cut -d' ' -f1)"
socat -u FILE:/tmp/out VSOCK-CONNECT:2:1234 && echo sent-4m
echo ready-for-host
for t in $(seq 600); do [ -s /tmp/in ] && [ $(stat -c %s /tmp/in) = 3145728 ] && break; sleep 0.1; done
echo "in-sum $(sha256sum </tmp/in | cut -d' ' -f1)"
GUEST
)
run_mode shared "$script_short"
pass "virtio-vsock through bulkhead-vsock: both directions, many connections, a stalled one"
