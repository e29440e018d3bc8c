#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The ELF vmlinux boots through its PVH entry; the console can go to a file or a unix
# socket; a guest with 3 GiB + RAM gets memory above the PCI hole.
# timeout: 300
set -u
. "$(dirname "$0")/lib-vmm.sh"
[ -f "$GUEST_VMLINUX" ] || fail "$GUEST_VMLINUX is missing"

LOG=$E2E_LOGS/pvh.log
guest_run 90 "$LOG" "$VMM" --kernel "$GUEST_VMLINUX" --initrd "$GUEST_INITRD" \
    --cmdline "$APPEND_BASE -- echo pvh-boot-ok"
expect_status $? 0 "PVH boot"
expect_in "$LOG" "pvh-boot-ok"

out=$E2E_LOGS/serial-file.out
rm -f "$out"
LOG=$E2E_LOGS/serial-file.log
timeout 90 "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --serial "file:$out" \
    --cmdline "$APPEND_BASE -- echo to-a-file" < /dev/null > "$LOG" 2>&1
expect_status $? 0 "--serial file:"
expect_in "$out" "to-a-file"
expect_not_in "$LOG" "to-a-file"

# Not in the shared log directory: 9p cannot hold a unix socket.
sock=$(mktemp -d)/serial.sock
LOG=$E2E_LOGS/serial-unix.log
rm -f "$sock"
timeout 90 "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --serial "unix:$sock" \
    --cmdline "$APPEND_BASE -- sh" < /dev/null > "$LOG" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "no socket at $sock"
# Talk to the guest through the socket: wait for its marker, then type a command.
uout=$E2E_LOGS/serial-unix.out
: > "$uout"
coproc SOCK { timeout 90 socat - "UNIX-CONNECT:$sock"; }
typed=0
while IFS= read -r -t 60 -u "${SOCK[0]}" line; do
    printf '%s\n' "$line" >> "$uout"
    case $line in
    *BULKHEAD-GUEST-READY*) [ $typed = 0 ] && typed=1 && echo 'echo over-$((40+2))-socket; exit' >&"${SOCK[1]}" ;;
    *BULKHEAD-GUEST-EXIT*) break ;;
    esac
done
wait $pid
expect_status $? 0 "--serial unix:"
expect_in "$E2E_LOGS/serial-unix.out" "over-42-socket"

LOG=$E2E_LOGS/mem-4g.log
guest_run 120 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 4G \
    --cmdline "$APPEND_BASE -- grep MemTotal /proc/meminfo"
expect_status $? 0 "4 GiB guest"
kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB.*/\1/p' "$LOG" | head -1)
[ -n "$kib" ] && [ "$kib" -gt 3800000 ] || fail "the 4 GiB guest sees MemTotal=${kib:-none} kB"
echo "ok: PVH boot, file and unix-socket consoles, RAM above 4 GiB ($kib kB)"
