#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# A disk whose backend is gone for good, isolated mode: bulkhead-blk is killed and its
# image removed, so every new bulkhead-blk the VMM starts fails at once. After the
# restart limit bulkhead-vmm gives up on the backend and completes the requests it held
# and every later one with VIRTIO_BLK_S_IOERR, so the guest's reads fail with I/O errors
# instead of hanging its driver, and the guest and the VMM go on (the guest powers off
# normally, status 0). The guest's other devices are not involved; the VMM logs why.
# timeout: 300
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-blk"

dir=$(mktemp -d /tmp/disk-dies.XXXXXX) || fail "mktemp"
killer_pid=
cleanup() {
    [ -n "$killer_pid" ] && kill -KILL "$killer_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

img=$dir/disk.raw
truncate -s 64M "$img"
LOG=$E2E_LOGS/dies.log
rm -f "$LOG"

# The guest reads the disk once (works), says so, then waits until the host has killed
# the backend (the VMM's log line tells the host; the guest just waits for its read to
# fail, with a bound), and reports what a read then gives.
script=$(cat <<'GUEST'
dd if=/dev/vda of=/dev/null bs=4096 count=256 iflag=direct 2>/dev/null && echo read-before-ok
echo backend-may-die
n=0
while [ $n -lt 100 ]; do
    if ! dd if=/dev/vda of=/dev/null bs=4096 count=16 skip=$((n * 16)) iflag=direct 2>/tmp/dd.err; then
        echo "read-after-failed: $(cat /tmp/dd.err | head -n 1)"
        break
    fi
    n=$((n + 1))
    sleep 0.2
done
echo guest-still-alive
GUEST
)

(
    wait_log '^backend-may-die' 120
    pid=$(blk_pid "$img")
    rm -f "$img"
    [ -n "$pid" ] && kill -KILL "$pid" && echo "killed $pid" >"$dir/killed"
) &
killer_pid=$!

guest_run 200 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
    --mem 256M --log-level info --disk "path=$img" \
    --cmdline "$APPEND_BASE -- $(guest_script "$script")"
rc=$?
wait "$killer_pid"
killer_pid=
expect_status $rc 0 "bulkhead-vmm"
[ -f "$dir/killed" ] || fail "the backend was not killed"
expect_in "$LOG" '^read-before-ok'
expect_in "$LOG" '^read-after-failed: .*(I/O error|Input/output error)'
expect_in "$LOG" '^guest-still-alive'
expect_in "$LOG" "disk0: backend connection lost: .*starting it again"
expect_in "$LOG" "disk0: 5 new backends in a row failed within 60 s; giving up on it"
expect_in "$LOG" "disk0: backend failed too often: .*requests fail with I/O errors"
expect_in "$LOG" 'disk0: queue 0: .* [1-9][0-9]* failed'
expect_guest_exit "$LOG" 0
pass "backend killed: the guest's reads fail with I/O errors, guest and VMM go on"
