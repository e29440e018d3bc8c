#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bulkhead-vmm's virtio-blk device in shared memory mode (standard vhost-user: the
# backend maps guest RAM), with Linux's virtio_blk driver and fio in the guest, against
#  1. qemu-storage-daemon's vhost-user-blk export (software nobody here wrote), and
#  2. bulkhead-blk started by bulkhead-vmm itself (--disk path=IMG) over a socketpair.
# In each: fio writes 16 MiB of random 4 KiB blocks with crc32c headers and reads them
# back verified; mkfs.ext4, a file, umount, fsck clean; after the VMM exits the image
# holds a pattern the guest wrote with O_DIRECT and fsync.
# timeout: 420
# testhost-smp: 2
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-blk"
command -v qemu-storage-daemon >/dev/null || fail "qemu-storage-daemon is not installed"

dir=$(mktemp -d /tmp/disk-e2e.XXXXXX) || fail "mktemp"
qsd_pid=
cleanup() {
    [ -n "$qsd_pid" ] && kill -KILL "$qsd_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

PATTERN_CMD="yes bulkhead-disk-pattern | head -c 1048576"
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
GUEST
)

# run_guest NAME DISK_OPTION: boot the tools guest with the disk and check the markers.
run_guest() {
    local name=$1 disk=$2
    LOG=$E2E_LOGS/$name.log
    guest_run 240 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
        --mem 512M --cpus 2 --log-level info --disk "$disk" \
        --cmdline "$APPEND_BASE -- $(guest_script "$script")"
    expect_status $? 0 "bulkhead-vmm ($name)"
    expect_guest_exit "$LOG" 0
    expect_in "$LOG" '^size=131072$'
    expect_in "$LOG" '^fio-verified$'
    expect_in "$LOG" '^fsck-clean$'
    expect_in "$LOG" '^pattern-written$'
    expect_in "$LOG" 'disk0: vhost-user backend .*shared memory'
    expect_not_in "$LOG" 'error|needs a reset'
}

# check_pattern IMG: the guest's O_DIRECT+fsync write is in the image at 56 MiB.
check_pattern() {
    bash -c "$PATTERN_CMD" >"$dir/want"
    dd if="$1" of="$dir/got" bs=65536 skip=896 count=16 2>/dev/null
    cmp "$dir/want" "$dir/got" || fail "the pattern the guest wrote is not in $1"
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
run_guest qsd "socket=$dir/qsd.sock,mode=shared"
kill -TERM "$qsd_pid"; wait "$qsd_pid" 2>/dev/null; qsd_pid=
check_pattern "$img"
note "qemu-storage-daemon: fio verify, ext4, flushed pattern: ok"

# 2. bulkhead-blk, started by the VMM.
img=$dir/blk.raw
truncate -s 64M "$img"
run_guest blk "path=$img,mode=shared"
check_pattern "$img"
[ -z "$(blk_pid "$img")" ] || fail "bulkhead-blk outlived the VMM"
note "bulkhead-blk child: fio verify, ext4, flushed pattern: ok"

pass "shared-mode virtio-blk with qemu-storage-daemon and bulkhead-blk"
