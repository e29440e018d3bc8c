#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# A 4-queue disk (--disk path=IMG,queues=4) in a 4-vCPU guest, isolated and shared:
# Linux's virtio_blk must see 4 hardware queues (/sys/block/vda/mq), and four fio jobs,
# each pinned to its own vCPU and so submitting through its own queue, write the WHOLE
# disk (a quarter each) with crc32c headers and verify it. Every queue must have carried
# requests: the VMM's counters (isolated) and bulkhead-blk's per-queue counts (both
# modes) are checked. mkfs.ext4 + fsck on the same disk then checks that the data
# path also holds together for a file system.
# timeout: 420
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-blk"

dir=$(mktemp -d /tmp/disk-mq.XXXXXX) || fail "mktemp"
trap 'rm -rf "$dir"' EXIT

script=$(cat <<'GUEST'
set -e
echo "mq=$(ls /sys/block/vda/mq | wc -l)"
size=$(($(cat /sys/block/vda/size) * 512))
q=$((size / 4))
fio --name=mq --filename=/dev/vda --rw=randwrite --bs=4k --size=$q --offset_increment=$q \
    --numjobs=4 --cpus_allowed=0-3 --cpus_allowed_policy=split --ioengine=libaio \
    --iodepth=8 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --group_reporting >/tmp/fio.log 2>&1 || { tail -n 20 /tmp/fio.log; exit 1; }
echo fio-whole-disk-verified
mkfs.ext4 -q -F /dev/vda
mount /dev/vda /mnt
yes multiqueue | head -c 4000000 >/mnt/file
umount /mnt
e2fsck -fn /dev/vda >/tmp/fsck.log 2>&1 && echo fsck-clean
GUEST
)

# run MODE: the run and its checks.
run() {
    local mode=$1 img=$dir/$1.raw
    truncate -s 64M "$img"
    LOG=$E2E_LOGS/$mode.log
    guest_run 300 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
        --mem 256M --cpus 4 --log-level info --disk "path=$img,queues=4,mode=$mode" \
        --cmdline "$APPEND_BASE -- $(guest_script "$script")"
    expect_status $? 0 "bulkhead-vmm ($mode)"
    expect_in "$LOG" '^mq=4$'
    expect_in "$LOG" '^fio-whole-disk-verified$'
    expect_in "$LOG" '^fsck-clean$'
    expect_guest_exit "$LOG" 0
    local i n
    for i in 0 1 2 3; do
        n=$(sed -n "s/^bulkhead-blk: info: blk: queue $i stopped after \\([0-9]*\\) requests.*/\\1/p" "$LOG" | tail -n 1)
        [ -n "$n" ] && [ "$n" -gt 100 ] ||
            fail "$mode: bulkhead-blk's queue $i carried ${n:-no} requests (want > 100; $LOG)"
        if [ "$mode" = isolated ]; then
            grep -q -E "disk0: queue $i: [1-9][0-9]{2,} requests, .* 0 failed" "$LOG" ||
                fail "$mode: the VMM's queue $i shows too few requests or failures ($LOG)"
        fi
        note "$mode: queue $i: $n requests"
    done
}
run isolated
run shared
pass "4 queues used by a 4-vCPU guest, whole disk written and verified, in both modes"
