#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# With --cpus 4 the guest brings up all four vCPUs (MADT + INIT/SIPI) and nproc says 4.
# In a 2-CPU test host, so that vCPU threads really run in parallel, as on a real host.
# timeout: 240
# testhost-smp: 2
set -u
. "$(dirname "$0")/lib-vmm.sh"
vmm_boot boot-4cpu 150 'echo cpus=$(nproc); grep -c ^processor /proc/cpuinfo' --cpus 4
rc=$?
expect_status $rc 0 "boot with 4 vCPUs"
expect_in "$LOG" "cpus=4"
expect_in "$LOG" "BULKHEAD-GUEST-EXIT=0"
echo "ok: 4 vCPUs online"
