#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# timeout: 180
# The test host can run a KVM guest: boot the small test guest with Debian's
# QEMU on the test host's /dev/kvm, check the ready marker, the output of a
# command run in the guest (shell arithmetic proves it went through sh -c)
# and the reported exit status.
. "$(dirname "$0")/lib.sh"
require_kvm
require_file "$GUEST_KERNEL" "$GUEST_INITRD"

log=$(test_log qemu-small-guest)
guest_run 90 "$log" qemu-system-x86_64 -enable-kvm -M pc -cpu host -m 256 -nodefaults \
    -no-reboot -serial stdio -display none -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
    -append 'console=ttyS0 quiet panic=-1 -- echo selftest-$((6*7))'
expect_status $? 0 "QEMU"
expect_in "$log" "^$READY_MARKER\$"
expect_in "$log" '^selftest-42$'
expect_guest_exit "$log" 0
pass "QEMU booted the small guest under the test host's KVM"
