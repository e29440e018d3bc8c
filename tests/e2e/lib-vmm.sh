# shellcheck shell=bash
# SPDX-License-Identifier: BSD-2-Clause
# Helpers for the bulkhead-vmm end-to-end tests (sourced; they run inside the test host,
# with the repository as the current directory). Builds on lib.sh.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VMM=${VMM:-build/bulkhead-vmm}
GUEST_VMLINUX=${GUEST_VMLINUX:-build/guest/vmlinux}
E2E_LOGS=${E2E_LOGS:-build/test-logs/e2e}
mkdir -p "$E2E_LOGS"
# Quiet console (every console byte is an exit), reboot on panic so a panic ends the VM.
APPEND_BASE="console=ttyS0 quiet panic=-1"

# vmm_boot NAME TIMEOUT GUEST_COMMAND [VMM_ARGS...]
# Boots the small guest with GUEST_COMMAND (run by its init after the ready marker) and
# returns bulkhead-vmm's exit status; the console and the VMM's log are in $LOG.
vmm_boot() {
    local name=$1 timeout=$2 cmd=$3
    shift 3
    LOG=$E2E_LOGS/$name.log
    guest_run "$timeout" "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
        --cmdline "$APPEND_BASE -- $cmd" "$@"
}

# expect_status ACTUAL WANTED WHAT
expect_status() {
    [ "$1" = "$2" ] || fail "$3: bulkhead-vmm exited $1, expected $2 (log: $LOG)"
}

# count_in FILE PATTERN: number of lines matching the fixed string PATTERN
count_in() {
    grep -c -F -- "$2" "$1" || true
}
