#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# timeout: 180
# The test host can run a KVM guest: boot the small test guest with Debian's
# QEMU on the test host's /dev/kvm, check the ready marker, the output of a
# command run in the guest (shell arithmetic proves it went through sh -c)
# and the reported exit status. The guest's CPU must not offer the
# TSC-deadline timer (lib.sh's QEMU_GUEST_CPU): with it, guests in the test
# host stall on lost timer wake-ups, and bulkhead-vmm leaves it out too.
. "$(dirname "$0")/lib.sh"
require_kvm
require_file "$GUEST_KERNEL" "$GUEST_INITRD"

log=$(test_log qemu-small-guest)
qemu_guest 90 "$log" "$GUEST_INITRD" \
    'echo selftest-$((6*7)); grep -q -w tsc_deadline_timer /proc/cpuinfo && echo tsc-deadline=yes || echo tsc-deadline=no'
expect_status $? 0 "QEMU"
expect_in "$log" "^$READY_MARKER\$"
expect_in "$log" '^selftest-42$'
expect_in "$log" '^tsc-deadline=no$'
expect_guest_exit "$log" 0
pass "QEMU booted the small guest under the test host's KVM, without the TSC-deadline timer"
