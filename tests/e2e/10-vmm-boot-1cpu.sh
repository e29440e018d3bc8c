#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bulkhead-vmm boots the Debian cloud kernel (bzImage) with 1 vCPU to userspace; the guest
# sees one CPU and uses kvm-clock; power-off ends the VMM with status 0.
# timeout: 180
set -u
. "$(dirname "$0")/lib-vmm.sh"
vmm_boot boot-1cpu 90 'echo cpus=$(nproc); echo clock=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)' --cpus 1
rc=$?
expect_status $rc 0 "boot with 1 vCPU"
expect_in "$LOG" BULKHEAD-GUEST-READY
expect_in "$LOG" "cpus=1"
expect_in "$LOG" "clock=kvm-clock"
expect_in "$LOG" "BULKHEAD-GUEST-EXIT=0"
echo "ok: 1 vCPU, kvm-clock, clean power-off"
