#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# vsock host -> guest end of stream: a host client connects to PATH, writes
# "CONNECT 5000" and 8 MiB at once, and closes; the guest's `socat -u VSOCK-LISTEN:5000 -`
# must see the whole stream and then its end, within a bounded time. Three kinds of
# client in turn: one that never reads the "OK" line (socat -u: the backend's host socket
# reports ECONNRESET after the last byte), one that reads it and closes half a second
# after its last byte (socat's default -t: the socket hangs up while the guest has not
# taken everything yet), one that shuts down writing and waits. Several rounds per boot
# (the failure was intermittent), in isolated mode then in shared mode.
# timeout: 600
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-vsock"

# One vCPU: twice (of about five runs) the second guest of this test, a 2-vCPU one in the
# 1-CPU test host, never came up (no console output in 375 s; once the test host's own
# kernel reported a CPU stuck for 235 s). What is tested needs no second vCPU.
ROUNDS=${TEST_VSOCK_EOF_ROUNDS:-6}
SIZE=8388608
dir=$(mktemp -d /tmp/vsock-eof.XXXXXX) || fail "mktemp"
bg=()
cleanup() {
    local p
    for p in "${bg[@]}"; do { kill -KILL "$p"; wait "$p"; } 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
head -c $SIZE /dev/urandom >"$dir/data"

# Each round: the listener first (so the REQUEST finds it), then the marker; the guest
# gives a round 30 s, far more than 8 MiB takes, and says how it ended. (The console's
# lines end in CR while the VM runs: the marker ends in a dot, not at the line's end.)
script=$(cat <<GUEST
for i in \$(seq $ROUNDS); do
  ( timeout 30 socat -u -b 65536 VSOCK-LISTEN:5000 -; echo \$? >/tmp/st ) | wc -c >/tmp/n &
  sleep 1.5; echo "listen-\$i."; wait
  echo "round-\$i \$(cat /tmp/n) st=\$(cat /tmp/st)"
done
GUEST
)

# run_mode MODE: boot with a vsock device of CID 5; the host feeds each round.
run_mode() {
    local mode=$1 uds=$dir/v-$1.sock i
    LOG=$E2E_LOGS/vsock-eof-$mode.log
    rm -f "$LOG"
    (
        for ((i = 1; i <= ROUNDS; i++)); do
            wait_log "^listen-$i\\." 200 || exit 0
            case $((i % 3)) in
            1) # never reads: closes with "OK" unread (ECONNRESET for the backend)
                { printf 'CONNECT 5000\n'; cat "$dir/data"; } |
                    timeout 60 socat -u -b 65536 - UNIX-CONNECT:"$uds" ;;
            2) # reads "OK", closes 0.5 s after its last byte (a hang-up, bytes still queued)
                { printf 'CONNECT 5000\n'; cat "$dir/data"; } |
                    timeout 60 socat -b 65536 - UNIX-CONNECT:"$uds" >/dev/null ;;
            0) # reads "OK", shuts down writing, waits for the guest's end
                { printf 'CONNECT 5000\n'; cat "$dir/data"; } |
                    timeout 60 socat -b 65536 -t 30 - UNIX-CONNECT:"$uds" >/dev/null ;;
            esac
        done
    ) &
    local host_pid=$!
    bg+=($host_pid)
    guest_run $((ROUNDS * 35 + 60)) "$LOG" "$VMM" --kernel "$GUEST_KERNEL" \
        --initrd "$GUEST_TOOLS_INITRD" --mem 512M --cpus 1 --log-level info \
        --vsock "cid=5,uds=$uds,mode=$mode" --cmdline "$APPEND_BASE -- $(guest_script "$script")"
    expect_status $? 0 "bulkhead-vmm (vsock, $mode)"
    wait "$host_pid"
    expect_guest_exit "$LOG" 0
    expect_in "$LOG" "vsock0: vhost-user backend .*$mode memory"
    local bad=0 line
    for ((i = 1; i <= ROUNDS; i++)); do
        line=$(grep -E "^round-$i " "$LOG")
        if [ "$line" != "round-$i $SIZE st=0" ]; then
            note "$mode, round $i (client kind $((i % 3))):" \
                "'${line:-no result}', expected 'round-$i $SIZE st=0'"
            bad=$((bad + 1))
        fi
    done
    if [ $bad -gt 0 ]; then
        grep -E 'vsock|round-|listen-' "$LOG" | tail -n 30 >&2
        fail "$mode: $bad of $ROUNDS host -> guest streams did not end properly (log $LOG)"
    fi
    note "vsock, $mode: $ROUNDS streams of 8 MiB host -> guest, each ended in the guest: ok"
}

run_mode isolated
run_mode shared
pass "virtio-vsock: the host's end of stream reaches the guest, OK line read or not"
