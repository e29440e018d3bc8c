#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# A kernel file rewritten in place while its guest runs is read and checked again when the
# guest reboots: a valid new kernel (the PVH vmlinux over the bzImage: another format and
# size) boots; a truncated one is refused with one error line and status 1, not a crash
# (the VMM used to map the file with its first size and die of SIGBUS).
# timeout: 240
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_KERNEL" "$GUEST_VMLINUX" "$GUEST_INITRD"

# The copies live on the test host's tmpfs: the shared log directory is slow for 50 MB.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# The guest says how it was booted (boot_params.type_of_loader: 0xff from bulkhead's bzImage
# loader, 0xb0 from Linux's own PVH entry code) and reboots after a bzImage boot only.
cmd=$(guest_script 't=$(od -An -tx1 -j528 -N1 /sys/kernel/boot_params/data | tr -d " ")
echo loader-type-$t
[ "$t" = ff ] && reboot -f
exit 0')

# rewrite_during_boot NAME REWRITE_FUNCTION: boot a copy of the bzImage; once the VMM has
# loaded it (its start-up line says the vCPUs run), rewrite the copy in place (same inode)
# with REWRITE_FUNCTION FILE, and let the guest reboot. Sets LOG and RC (the VMM's status).
rewrite_during_boot() {
    local name=$1 rewrite=$2 pid
    local k=$dir/$name-vmlinuz
    cp "$GUEST_KERNEL" "$k"
    LOG=$E2E_LOGS/$name.log
    timeout 120 "$VMM" --kernel "$k" --initrd "$GUEST_INITRD" --log-level info \
        --cmdline "$APPEND_BASE -- $cmd" </dev/null >"$LOG" 2>&1 &
    pid=$!
    for _ in $(seq 600); do
        grep -q "first vCPU entry" "$LOG" && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    grep -q "first vCPU entry" "$LOG" || { show_log "$LOG"; fail "$name: the guest never started"; }
    "$rewrite" "$k"
    note "$name: kernel rewritten, $(stat -c %s "$k") bytes"
    wait $pid
    RC=$?
    sed -i 's/\r$//' "$LOG"
}

# `>` truncates and rewrites the file the VMM holds open.
with_vmlinux() { cat "$GUEST_VMLINUX" >"$1"; }
truncated() { head -c 4000000 "$GUEST_KERNEL" >"$1"; }

rewrite_during_boot rewritten-valid with_vmlinux
[ "$(count_in "$LOG" "$READY_MARKER")" = 2 ] || { show_log "$LOG"; fail "the guest did not come up exactly twice"; }
expect_in "$LOG" "restarting the VM"
expect_in "$LOG" "^loader-type-ff$"
expect_in "$LOG" "^loader-type-b0$"
expect_guest_exit "$LOG" 0
expect_status $RC 0 "the VMM (valid kernel rewritten before the reboot)"

rewrite_during_boot rewritten-truncated truncated
[ $RC -lt 128 ] || { show_log "$LOG"; fail "the VMM died of signal $((RC - 128)) on a truncated kernel"; }
expect_status $RC 1 "the VMM (kernel truncated before the reboot)"
[ "$(count_in "$LOG" "$READY_MARKER")" = 1 ] || { show_log "$LOG"; fail "expected one boot only"; }
[ "$(count_in "$LOG" ": error: ")" = 1 ] || { show_log "$LOG"; fail "expected exactly one error line"; }
expect_in "$LOG" ": error: boot: bzImage is truncated"
echo "ok: rewritten kernel re-read at reboot (bzImage -> PVH vmlinux), truncated one refused with status 1"
pass
