#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bulkhead-vmm's virtio-blk device in both memory modes, with Linux's virtio_blk driver
# and fio in the guest:
#  1. qemu-storage-daemon's vhost-user-blk export (software nobody here wrote), isolated
#     (the backend maps only the device's bounce region; the VMM copies between the
#     guest's rings and shadow rings) and shared (standard vhost-user: it maps guest RAM);
#  2. bulkhead-blk started by bulkhead-vmm itself (--disk path=IMG), in the default mode
#     (isolated): while the guest runs, the backend's /proc/PID/maps must show the bounce
#     memfd and not guest RAM;
#  3. bulkhead-blk in shared mode.
# In each: fio writes 16 MiB of random 4 KiB blocks with crc32c headers and reads them
# back verified; mkfs.ext4, a file, umount, fsck clean; after the run the image holds a
# pattern the guest wrote with O_DIRECT and fsync.
# timeout: 480
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-blk"
command -v qemu-storage-daemon >/dev/null || fail "qemu-storage-daemon is not installed"

dir=$(mktemp -d /tmp/disk-iso-e2e.XXXXXX) || fail "mktemp"
qsd_pid=
watch_pid=
cleanup() {
    [ -n "$qsd_pid" ] && kill -KILL "$qsd_pid" 2>/dev/null
    [ -n "$watch_pid" ] && kill -KILL "$watch_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

PATTERN_CMD="yes bulkhead-disk-pattern | head -c 1048576"
# The guest says when it is done with the disk and stays up a few seconds, so the host
# can look at the backend's mappings while the device is live.
script=$(cat <<'GUEST'
set -e
test -b /dev/vda
echo "size=$(cat /sys/block/vda/size)"
fio --name=w --filename=/dev/vda --rw=randwrite --bs=4k --size=16M --ioengine=libaio \
    --iodepth=16 --direct=1 --verify=crc32c --do_verify=0 --randrepeat=1 >/tmp/fio-w.log
fio --name=w --filename=/dev/vda --rw=randwrite --bs=4k --size=16M --ioengine=libaio \
    --iodepth=16 --direct=1 --verify=crc32c --verify_only --randrepeat=1 >/tmp/fio-v.log
echo fio-verified
mkfs.ext4 -q -F /dev/vda 40M
mount /dev/vda /mnt
yes hello-ext4 | head -c 3000000 >/mnt/file
umount /mnt
e2fsck -fn /dev/vda >/tmp/fsck.log 2>&1 && echo fsck-clean
yes bulkhead-disk-pattern | head -c 1048576 | dd of=/dev/vda bs=65536 seek=896 oflag=direct conv=fsync 2>/dev/null
echo pattern-written
echo disk-idle
sleep 4
GUEST
)

# run_guest NAME DISK_OPTION MODE: boot the tools guest with the disk and check the
# markers and the VMM's account of the device (MODE: isolated or shared).
run_guest() {
    local name=$1 disk=$2 mode=$3
    LOG=$E2E_LOGS/$name.log
    guest_run 300 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
        --mem 512M --cpus 2 --log-level info --disk "$disk" \
        --cmdline "$APPEND_BASE -- $(guest_script "$script")"
    expect_status $? 0 "bulkhead-vmm ($name)"
    expect_guest_exit "$LOG" 0
    expect_in "$LOG" '^size=131072$'
    expect_in "$LOG" '^fio-verified$'
    expect_in "$LOG" '^fsck-clean$'
    expect_in "$LOG" '^pattern-written$'
    if [ "$mode" = isolated ]; then
        expect_in "$LOG" 'disk0: vhost-user backend .*isolated memory \(bounce region [0-9]+ MiB\)'
        expect_in "$LOG" 'disk0: queue 0: [1-9][0-9]* requests'
    else
        expect_in "$LOG" 'disk0: vhost-user backend .*shared memory'
    fi
    expect_not_in "$LOG" 'error|needs a reset'
}

# check_pattern IMG: the guest's O_DIRECT+fsync write is in the image at 56 MiB.
check_pattern() {
    bash -c "$PATTERN_CMD" >"$dir/want"
    dd if="$1" of="$dir/got" bs=65536 skip=896 count=16 2>/dev/null
    cmp "$dir/want" "$dir/got" || fail "the pattern the guest wrote is not in $1"
}

# watch_maps LOG IMG OUT: once the guest prints disk-idle, copy the bulkhead-blk child's
# /proc/PID/maps to OUT (or write why not).
watch_maps() {
    local log=$1 img=$2 out=$3 pid
    for _ in $(seq 3000); do
        grep -q '^disk-idle' "$log" 2>/dev/null && break
        sleep 0.1
    done
    pid=$(blk_pid "$img")
    if [ -z "$pid" ]; then
        echo "NO-BACKEND-PID" >"$out"
        return
    fi
    cat "/proc/$pid/maps" >"$out.tmp" 2>&1 && echo "MAPS-OK $pid" >>"$out.tmp"
    mv "$out.tmp" "$out"
}

# 1. qemu-storage-daemon as the backend.
img=$dir/qsd.raw
truncate -s 64M "$img"
qemu-storage-daemon --blockdev driver=file,node-name=f0,filename="$img" \
    --export type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path="$dir/qsd.sock",writable=on,num-queues=2 \
    >"$E2E_LOGS/qsd.log" 2>&1 &
qsd_pid=$!
for _ in $(seq 100); do [ -S "$dir/qsd.sock" ] && break; sleep 0.05; done
[ -S "$dir/qsd.sock" ] || { show_log "$E2E_LOGS/qsd.log"; fail "qemu-storage-daemon did not listen"; }
run_guest qsd-iso "socket=$dir/qsd.sock,mode=isolated" isolated
check_pattern "$img"
note "qemu-storage-daemon, isolated: fio verify, ext4, flushed pattern: ok"
# The same export in shared mode (standard vhost-user: it maps guest RAM).
truncate -s 0 "$img"
truncate -s 64M "$img"
run_guest qsd-shared "socket=$dir/qsd.sock,mode=shared" shared
kill -TERM "$qsd_pid"; wait "$qsd_pid" 2>/dev/null; qsd_pid=
check_pattern "$img"
note "qemu-storage-daemon, shared: fio verify, ext4, flushed pattern: ok"

# 2. bulkhead-blk, started by the VMM, in the default mode; its mappings checked live.
img=$dir/blk.raw
truncate -s 64M "$img"
maps=$dir/blk.maps
rm -f "$E2E_LOGS/blk-iso.log" # a previous run's disk-idle must not set the watcher off
watch_maps "$E2E_LOGS/blk-iso.log" "$img" "$maps" &
watch_pid=$!
run_guest blk-iso "path=$img" isolated
wait "$watch_pid"; watch_pid=
check_pattern "$img"
[ -n "$(blk_pid "$img")" ] && fail "bulkhead-blk outlived the VMM"
[ -f "$maps" ] || fail "the backend's mappings were not captured"
cp "$maps" "$E2E_LOGS/blk-iso.maps"
grep -q '^MAPS-OK ' "$maps" || { show_log "$maps"; fail "cannot read the backend's /proc/PID/maps"; }
grep -q 'bulkhead-guest-ram' "$maps" && { show_log "$maps"; fail "bulkhead-blk maps guest RAM in isolated mode"; }
grep -q 'memfd:bulkhead-bounce' "$maps" || { show_log "$maps"; fail "bulkhead-blk does not map the bounce region"; }
note "bulkhead-blk child: fio verify, ext4, flushed pattern, maps only the bounce region: ok"

# 3. bulkhead-blk in shared mode.
img=$dir/blk-shared.raw
truncate -s 64M "$img"
run_guest blk-shared "path=$img,mode=shared" shared
check_pattern "$img"
[ -n "$(blk_pid "$img")" ] && fail "bulkhead-blk outlived the VMM"
note "bulkhead-blk child, shared: fio verify, ext4, flushed pattern: ok"

pass "virtio-blk in isolated and shared mode with qemu-storage-daemon and bulkhead-blk"
