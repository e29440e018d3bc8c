#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# A disk backend killed with SIGKILL under fio load comes back, and in isolated mode the
# guest never sees an error: bulkhead-vmm keeps every request in flight, starts a new
# backend, gives it fresh bounce memory and shadow rings, and posts those requests again.
#  1. --disk path=IMG (isolated): bulkhead-vmm's own bulkhead-blk child is killed twice
#     while fio writes and verifies; bulkhead-vmm starts it again each time.
#  2. --disk socket=PATH (isolated): qemu-storage-daemon is killed while fio runs and
#     started again a moment later; bulkhead-vmm reconnects.
#  3. --disk path=IMG,mode=shared, killed while the disk is idle (every request the
#     guest made completed): the new bulkhead-blk takes the guest's rings over where
#     they stood, and fio runs and verifies again without the guest resetting anything.
# In both, fio's crc32c verification of everything it wrote must pass, and the VMM must
# say that it sent requests in flight to the new backend (so the kill hit the load: the
# backend is stopped with SIGSTOP for 0.5 s before SIGKILL, so requests pile up).
# In 1, the counters are read through the control socket while fio runs (after the
# second restart): the device is connected again, restarts=2, requests are counted.
# timeout: 480
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-blk"
command -v qemu-storage-daemon >/dev/null || fail "qemu-storage-daemon is not installed"

dir=$(mktemp -d /tmp/disk-restart.XXXXXX) || fail "mktemp"
killer_pid= qsd_pid=
cleanup() {
    [ -n "$killer_pid" ] && kill -KILL "$killer_pid" 2>/dev/null
    [ -n "$qsd_pid" ] && kill -KILL "$qsd_pid" 2>/dev/null
    [ -f "$dir/qsd.pid" ] && kill -KILL "$(cat "$dir/qsd.pid")" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# fio writes 48 MiB of random 4 KiB blocks at queue depth 16, then reads all of it back
# and checks each block's crc32c header, three times over (one pass once took less than
# the two kills need: the kills must land while it runs). Any I/O error or bad block
# fails it.
script=$(cat <<'GUEST'
echo fio-start
good=0
for pass in 1 2 3; do
    fio --name=r --filename=/dev/vda --rw=randwrite --bs=4k --size=48M --ioengine=libaio \
        --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --randseed=$pass >/tmp/fio.log 2>&1 || break
    echo "fio-pass-$pass"
    good=$pass
done
if [ $good = 3 ]; then echo fio-verified; else echo fio-failed; tail -n 20 /tmp/fio.log; fi
GUEST
)

# check_run RC RESTARTS: the common verdict of a run.
check_run() {
    expect_status "$1" 0 "bulkhead-vmm"
    [ -f "$dir/killer.ok" ] || { show_log "$dir/killer.log"; fail "the backend was not killed as planned"; }
    expect_in "$LOG" '^fio-verified'
    expect_in "$LOG" "disk0: backend back \\(restart $2\\)"
    grep -E 'disk0: [0-9]+ request\(s\) in flight sent to the new backend' "$LOG" >&2
    grep -q -E 'disk0: [1-9][0-9]* request\(s\) in flight sent to the new backend' "$LOG" ||
        fail "no kill caught requests in flight ($LOG)"
    expect_in "$LOG" "disk0: backend restarts: $2"
    expect_guest_exit "$LOG" 0
}

# 1. bulkhead-blk, killed twice.
img=$dir/disk.raw
truncate -s 64M "$img"
LOG=$E2E_LOGS/path.log
rm -f "$LOG"
(
    set +e
    for n in 1 2; do
        wait_log '^fio-start' 120 || exit 1
        sleep 1
        pid=$(blk_pid "$img")
        [ -n "$pid" ] || { echo "no bulkhead-blk for kill $n"; exit 1; }
        # Stopped first, so that requests pile up in flight (the guest keeps 16 queued)
        # whatever the scheduling of the test host's CPU; then killed.
        kill -STOP "$pid" && sleep 0.5 && kill -KILL "$pid" && echo "kill $n: $pid"
        wait_log "disk0: backend back \\(restart $n\\)" 30 || { echo "no restart $n"; exit 1; }
    done
    echo counters | socat -t 5 - "UNIX-CONNECT:$dir/control.sock" >"$dir/counters" || exit 1
    grep -q '^fio-verified\|^fio-failed' "$LOG" && { echo "fio ended before the kills"; exit 1; }
    touch "$dir/killer.ok"
) >"$dir/killer.log" 2>&1 &
killer_pid=$!
guest_run 300 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
    --mem 256M --cpus 2 --log-level info --disk "path=$img" --control "$dir/control.sock" \
    --cmdline "$APPEND_BASE -- $(guest_script "$script")"
rc=$?
wait "$killer_pid"
killer_pid=
cat "$dir/killer.log" >&2
check_run $rc 2
sed 's/^/  counters: /' "$dir/counters" >&2
grep -q '^disk0 mode=isolated backend=connected restarts=2 queues=1$' "$dir/counters" ||
    fail "control socket: no 'disk0 ... backend=connected restarts=2' line"
grep -q -E '^disk0\.q0 guest_kicks=[1-9][0-9]* .*requests=[1-9][0-9]* .*resubmitted=[1-9]' "$dir/counters" ||
    fail "control socket: disk0.q0 shows no kicks, requests or resubmitted requests"
note "bulkhead-blk killed twice under fio: restarted, requests resubmitted, fio verified"

# 2. qemu-storage-daemon, killed and started again.
img=$dir/qsd.raw
truncate -s 64M "$img"
sock=$dir/qsd.sock
start_qsd() {
    rm -f "$sock"
    qemu-storage-daemon --blockdev driver=file,node-name=f0,filename="$img" \
        --export type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path="$sock",writable=on \
        >>"$E2E_LOGS/qsd.log" 2>&1 &
    echo $! >"$dir/qsd.pid"
    for _ in $(seq 200); do [ -S "$sock" ] && return 0; sleep 0.05; done
    return 1
}
start_qsd || { show_log "$E2E_LOGS/qsd.log"; fail "qemu-storage-daemon did not listen"; }
LOG=$E2E_LOGS/socket.log
rm -f "$LOG" "$dir/killer.ok"
(
    set +e
    wait_log '^fio-start' 120 || exit 1
    sleep 1
    kill -STOP "$(cat "$dir/qsd.pid")" && sleep 0.5 &&
        kill -KILL "$(cat "$dir/qsd.pid")" && echo "killed qemu-storage-daemon"
    wait_log 'disk0: backend connection lost' 30 || { echo "the VMM did not notice"; exit 1; }
    sleep 0.5
    start_qsd || { echo "qemu-storage-daemon did not listen again"; exit 1; }
    wait_log 'disk0: backend back \(restart 1\)' 30 || { echo "no reconnection"; exit 1; }
    grep -q '^fio-verified\|^fio-failed' "$LOG" && { echo "fio ended before the kill"; exit 1; }
    touch "$dir/killer.ok"
) >"$dir/killer.log" 2>&1 &
killer_pid=$!
guest_run 300 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
    --mem 256M --cpus 2 --log-level info --disk "socket=$sock" \
    --cmdline "$APPEND_BASE -- $(guest_script "$script")"
rc=$?
wait "$killer_pid"
killer_pid=
cat "$dir/killer.log" >&2
check_run $rc 1
note "qemu-storage-daemon killed under fio and started again: reconnected, fio verified"

# 3. Shared mode, bulkhead-blk killed while the disk is idle.
img=$dir/shared.raw
truncate -s 64M "$img"
script=$(cat <<'GUEST'
fio --name=a --filename=/dev/vda --rw=randwrite --bs=4k --size=8M --ioengine=libaio \
    --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 >/tmp/a.log 2>&1 &&
    echo fio-1-verified
# Idle: no request of vda in flight (reads and writes), as the block layer counts them.
n=0
while [ "$(cat /sys/block/vda/inflight | tr -s ' ')" != " 0 0" ] && [ $n -lt 50 ]; do
    sleep 0.1; n=$((n + 1))
done
echo "inflight:$(cat /sys/block/vda/inflight | tr -s ' ')"
echo disk-idle
sleep 6
fio --name=b --filename=/dev/vda --rw=randwrite --bs=4k --size=8M --offset=16M --ioengine=libaio \
    --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 >/tmp/b.log 2>&1 &&
    echo fio-2-verified
GUEST
)
LOG=$E2E_LOGS/shared-idle.log
rm -f "$LOG" "$dir/killer.ok"
(
    set +e
    wait_log '^disk-idle' 120 || exit 1
    pid=$(blk_pid "$img")
    [ -n "$pid" ] || { echo "no bulkhead-blk"; exit 1; }
    kill -KILL "$pid" && echo "killed $pid"
    wait_log 'disk0: backend back \(restart 1\)' 30 || { echo "no restart"; exit 1; }
    grep -q '^fio-2-verified' "$LOG" && { echo "the second fio ran before the restart"; exit 1; }
    touch "$dir/killer.ok"
) >"$dir/killer.log" 2>&1 &
killer_pid=$!
guest_run 300 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
    --mem 256M --cpus 2 --log-level info --disk "path=$img,mode=shared" \
    --cmdline "$APPEND_BASE -- $(guest_script "$script")"
rc=$?
wait "$killer_pid"
killer_pid=
cat "$dir/killer.log" >&2
expect_status $rc 0 "bulkhead-vmm"
[ -f "$dir/killer.ok" ] || fail "the backend was not killed as planned"
expect_in "$LOG" '^fio-1-verified'
expect_in "$LOG" '^fio-2-verified'
expect_in "$LOG" 'disk0: backend back \(restart 1\)'
expect_not_in "$LOG" 'needs a reset'
expect_guest_exit "$LOG" 0
note "shared mode, bulkhead-blk killed while idle: the new one took the rings over"
pass "killed backends came back; no request was lost or failed"
