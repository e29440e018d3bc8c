#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Guest power-off ends bulkhead-vmm with status 0; a guest reboot restarts the VM in the
# same process (the guest comes up again); under --no-reboot a reboot exits with status 3.
# timeout: 300
set -u
. "$(dirname "$0")/lib-vmm.sh"

vmm_boot poweroff 90 'poweroff -f'
expect_status $? 0 "guest poweroff"
expect_in "$LOG" BULKHEAD-GUEST-READY

vmm_boot reboot-no-reboot 90 'reboot -f' --no-reboot
expect_status $? 3 "guest reboot under --no-reboot"
expect_in "$LOG" BULKHEAD-GUEST-READY

# Without --no-reboot the guest boots again; after the second boot we stop the VMM.
LOG=$E2E_LOGS/reboot.log
# (--shutdown-timeout 0: SIGTERM stops at once; a guest rebooting in a loop would not
# answer the power button in time.)
timeout 150 "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --log-level info \
    --shutdown-timeout 0 --cmdline "$APPEND_BASE -- reboot -f" < /dev/null > "$LOG" 2>&1 &
pid=$!
for _ in $(seq 1200); do
    [ "$(count_in "$LOG" BULKHEAD-GUEST-READY)" -ge 2 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
[ "$(count_in "$LOG" BULKHEAD-GUEST-READY)" -ge 2 ] || fail "the guest did not come up again after reboot (log: $LOG)"
expect_in "$LOG" "restarting the VM"
expect_status $rc 143 "stop by SIGTERM after the reboot"
echo "ok: poweroff -> 0, reboot -> guest up again, --no-reboot -> 3"
