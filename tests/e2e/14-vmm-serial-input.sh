#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Input sent to the VMM's stdin reaches the guest through the 16550A (interrupt-driven
# receive), and the guest's answer comes back: a shell in the guest reads commands typed
# over the serial port.
# timeout: 180
set -u
. "$(dirname "$0")/lib-vmm.sh"
LOG=$E2E_LOGS/serial-input.log
fifo=$(mktemp -u)
mkfifo "$fifo"
exec {in}<>"$fifo" # hold both ends so the VMM never sees EOF early
timeout 120 "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
    --cmdline "$APPEND_BASE -- sh" <&$in > "$LOG" 2>&1 &
pid=$!
# Wait for the ready marker, then type. A line longer than the 16-byte FIFO checks that
# refused input is offered again rather than lost.
for _ in $(seq 600); do
    grep -q BULKHEAD-GUEST-READY "$LOG" && break
    sleep 0.1
done
expect_in "$LOG" BULKHEAD-GUEST-READY
sleep 0.5
printf 'echo typed-$((6*7))-%s\n' "abcdefghijklmnopqrstuvwxyz0123456789" >&$in
for _ in $(seq 300); do
    grep -q "typed-42-abc" "$LOG" && break
    sleep 0.1
done
printf 'exit 0\n' >&$in
wait $pid
rc=$?
exec {in}>&-
rm -f "$fifo"
expect_status $rc 0 "serial session"
expect_in "$LOG" "typed-42-abcdefghijklmnopqrstuvwxyz0123456789"
expect_in "$LOG" "BULKHEAD-GUEST-EXIT=0"
echo "ok: serial input reached the guest shell and its answer came back"
