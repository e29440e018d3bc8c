#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# timeout: 540
# bulkhead-blk against Debian's QEMU as the vhost-user frontend (vhost-user-blk-pci,
# two queues, guest RAM in a shared memfd), on a 64 MiB raw image in a tmpfs:
#  1. read-write: the guest sees the disk (size, serial, two hardware queues, not
#     read-only), fio writes 32 MiB of random 4 KiB blocks with crc32c headers from
#     both vCPUs (so both queues) and a second fio run reads every block back and
#     verifies it; mkfs.ext4 (with discards), mount, a 3 MB file, umount, fsck -n
#     clean; a 1 MiB pattern written with O_DIRECT and fsync at 56 MiB. Host side:
#     the pattern is in the image at that offset, the file system is clean and holds
#     the file, both queues carried requests.
#  2. the same bulkhead-blk process serves a second QEMU (a reconnecting frontend):
#     the guest reads the pattern and the file back.
#  3. --readonly: the guest sees a read-only disk, reads work, writes fail, and the
#     image is unchanged afterwards.
# bulkhead-blk must exit 0 on SIGTERM each time and log no warning or error.
. "$(dirname "$0")/lib.sh"
require_kvm
BLK=${BLK:-$BUILD/bulkhead-blk}
[ -x "$BLK" ] || fail "$BLK is not built"
require_file "$GUEST_KERNEL" "$GUEST_TOOLS_INITRD"

dir=$(mktemp -d /tmp/blk-e2e.XXXXXX) || fail "mktemp"
mount -t tmpfs -o size=160M tmpfs "$dir" || fail "cannot mount a tmpfs on $dir"
img=$dir/disk.raw
sock=$dir/blk.sock
truncate -s 64M "$img" || fail "cannot create $img"
blk_pid=""
blk_log=""

# On failure, bulkhead-blk's log explains as much as the guest's console.
cleanup() {
    local rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -n "$blk_log" ]; then
        show_log "$blk_log"
    fi
    [ -n "$blk_pid" ] && kill -KILL "$blk_pid" 2>/dev/null
    umount "$dir" 2>/dev/null
    rmdir "$dir" 2>/dev/null
}
trap cleanup EXIT

# The pattern the guest writes at 56 MiB and the file it puts in the file system;
# the host makes the same bytes to compare.
PATTERN_CMD="yes bulkhead-blk-pattern | head -c 1048576"
FILE_CMD="yes hello-ext4 | head -c 3000000"

# start_blk NAME ARGS...: bulkhead-blk on $sock, stderr in NAME's log; waits for the socket.
start_blk() {
    local name=$1 _
    shift
    blk_log=$(test_log "blk-$name")
    rm -f "$sock"
    "$BLK" --image "$img" --socket "$sock" --queues 2 --log-level info "$@" \
        </dev/null 2>"$blk_log" &
    blk_pid=$!
    for _ in $(seq 100); do
        [ -S "$sock" ] && return 0
        kill -0 "$blk_pid" 2>/dev/null || break
        sleep 0.05
    done
    show_log "$blk_log"
    fail "bulkhead-blk ($name) did not start listening on $sock"
}

# stop_blk: SIGTERM; it must exit 0 and have logged no warning or error.
stop_blk() {
    local rc
    kill -0 "$blk_pid" 2>/dev/null || {
        show_log "$blk_log"
        fail "bulkhead-blk died before it was stopped (log $blk_log)"
    }
    kill -TERM "$blk_pid"
    wait "$blk_pid"
    rc=$?
    blk_pid=
    [ "$rc" = 0 ] || {
        show_log "$blk_log"
        fail "bulkhead-blk exited with status $rc after SIGTERM, expected 0"
    }
    expect_not_in "$blk_log" ': (warn|error): '
}

# run_qemu NAME SCRIPT: the tools guest under QEMU with the vhost-user-blk disk.
run_qemu() {
    local log rc
    log=$(test_log "qemu-$1")
    # shellcheck disable=SC2034,SC2054 # qemu_guest reads it; commas are QEMU's
    QEMU_EXTRA=(-cpu host,-tsc-deadline -smp 2
        -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem
        -chardev "socket,id=vblk,path=$sock"
        -device vhost-user-blk-pci,chardev=vblk,num-queues=2)
    qemu_guest 200 "$log" "$GUEST_TOOLS_INITRD" "$(guest_script "$2")"
    rc=$?
    [ "$rc" = 0 ] || {
        show_log "$log"
        fail "QEMU ($1) exited with status $rc, expected 0"
    }
    qemu_log=$log
}

# ---- 1. read-write ------------------------------------------------------------------
rw_script="
d=/dev/vda
[ -b \$d ] || { echo no-vda; exit 10; }
echo vda-ro=\$(cat /sys/block/vda/ro) getro=\$(blockdev --getro \$d) bytes=\$(blockdev --getsize64 \$d)
echo serial=\$(cat /sys/block/vda/serial) hctx=\$(ls /sys/block/vda/mq | wc -l)
j='--filename=/dev/vda --rw=randwrite --bs=4k --size=16M --numjobs=2 --offset_increment=16M
 --cpus_allowed=0-1 --cpus_allowed_policy=split --verify=crc32c --iodepth=16
 --ioengine=libaio --direct=1 --group_reporting'
fio --name=w \$j --do_verify=0 >/tmp/w 2>&1 && echo fio-write-ok || tail -5 /tmp/w
fio --name=w \$j --verify_only >/tmp/v 2>&1 && echo fio-verify-ok || tail -5 /tmp/v
mkfs.ext4 -q -F \$d 48M || exit 11
mkdir -p /mnt && mount -t ext4 \$d /mnt || exit 12
$FILE_CMD >/mnt/f && sync && umount /mnt && echo ext4-written
e2fsck -fn \$d >/tmp/k 2>&1 && echo fsck-clean || tail -5 /tmp/k
$PATTERN_CMD >/tmp/p
dd if=/tmp/p of=\$d bs=1M seek=56 oflag=direct conv=fsync 2>/dev/null && echo pattern-written
"
start_blk rw --serial bulkhead-e2e
t0=$(now_ms)
run_qemu rw "$rw_script"
note "read-write run: $(($(now_ms) - t0)) ms"
for m in '^vda-ro=0 getro=0 bytes=67108864$' '^serial=bulkhead-e2e hctx=2$' '^fio-write-ok$' \
    '^fio-verify-ok$' '^ext4-written$' '^fsck-clean$' '^pattern-written$'; do
    expect_in "$qemu_log" "$m"
done
expect_guest_exit "$qemu_log" 0

# Host side: what the guest wrote and flushed is in the image. (The test host has
# no /dev/fd, so no process substitution: files in the tmpfs.)
eval "$PATTERN_CMD" >"$dir/pattern"
dd if="$img" of="$dir/at56M" bs=1M skip=56 count=1 status=none
cmp "$dir/at56M" "$dir/pattern" || fail "the pattern the guest wrote at 56 MiB is not in the image"
e2fsck -fn "$img" >"$(test_log e2fsck-host)" 2>&1 || {
    show_log "$(test_log e2fsck-host)"
    fail "e2fsck -fn on the image (host side) found problems"
}
eval "$FILE_CMD" >"$dir/file"
debugfs -R 'cat /f' "$img" >"$dir/file-in-image" 2>/dev/null
cmp "$dir/file-in-image" "$dir/file" || fail "the file the guest wrote is not in the image's file system"
rm -f "$dir/at56M" "$dir/pattern" "$dir/file" "$dir/file-in-image"
# Both queues carried requests (one line per queue when QEMU stopped it).
for q in 0 1; do
    expect_in "$blk_log" "blk: queue $q stopped after [1-9][0-9]* requests"
done
expect_in "$blk_log" 'the frontend closed the connection'

# ---- 2. a second frontend on the same process ---------------------------------------
check_script="
d=/dev/vda
$PATTERN_CMD >/tmp/p
dd if=\$d bs=1M skip=56 count=1 iflag=direct 2>/dev/null | cmp - /tmp/p && echo pattern-read
mkdir -p /mnt && mount -t ext4 -o ro,noload \$d /mnt && $FILE_CMD | cmp - /mnt/f && echo file-read
umount /mnt
echo vda-ro=\$(cat /sys/block/vda/ro)
dd if=/dev/zero of=\$d bs=4k count=1 seek=15360 oflag=direct conv=fsync 2>/dev/null &&
  echo write-ok || echo write-failed
"
t0=$(now_ms)
run_qemu reconnect "$check_script"
note "reconnected run: $(($(now_ms) - t0)) ms"
for m in '^pattern-read$' '^file-read$' '^vda-ro=0$' '^write-ok$'; do
    expect_in "$qemu_log" "$m"
done
expect_guest_exit "$qemu_log" 0
[ "$(grep -c 'frontend connected' "$blk_log")" = 2 ] ||
    fail "bulkhead-blk did not serve two connections (log $blk_log)"
stop_blk

# ---- 3. read-only ---------------------------------------------------------------------
sum=$(md5sum <"$img")
start_blk ro --readonly
t0=$(now_ms)
run_qemu ro "$check_script"
note "read-only run: $(($(now_ms) - t0)) ms"
for m in '^pattern-read$' '^file-read$' '^vda-ro=1$' '^write-failed$'; do
    expect_in "$qemu_log" "$m"
done
expect_guest_exit "$qemu_log" 0
stop_blk
[ "$(md5sum <"$img")" = "$sum" ] || fail "the image changed during the read-only run"
pass "bulkhead-blk serves QEMU: fio verify on two queues, ext4, flush, reconnect, read-only"
