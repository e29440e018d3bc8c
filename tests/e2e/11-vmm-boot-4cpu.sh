#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# With --cpus 4 the guest brings up all four vCPUs (MADT + INIT/SIPI) and nproc says 4.
# In a 1-CPU test host: the first 4-vCPU boot in a fresh 2-CPU test host triple-faulted in
# 1 of 20 (QEMU: 0 of 20), not understood yet (docs/testing.md, "Hangs"); vCPU threads
# running in parallel are 20-vmm-parallel-vcpus's subject, in a 2-CPU test host.
# timeout: 240
set -u
. "$(dirname "$0")/lib-vmm.sh"
vmm_boot boot-4cpu 150 'echo cpus=$(nproc); grep -c ^processor /proc/cpuinfo' --cpus 4
rc=$?
expect_status $rc 0 "boot with 4 vCPUs"
expect_in "$LOG" "cpus=4"
expect_in "$LOG" "BULKHEAD-GUEST-EXIT=0"
echo "ok: 4 vCPUs online"
