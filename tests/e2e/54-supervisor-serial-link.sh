#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Serial links between two VMs, declared in the description (serial-links:) and carried by
# the supervisor:
#  - a's COM2 to b's COM2 (bulkhead-vmm --serial2; /dev/ttyS1 in the guests): b asks with
#    one byte, a answers with 16 KiB of random bytes; the checksums agree;
#  - a's virtio-console port "data" to b's port "data" (/dev/vport*, found by name): 1 MiB
#    of random bytes; the checksums agree.
# timeout: 600
set -u
. "$(dirname "$0")/lib-vmm.sh"
BH=$BUILD/bulkhead
require_file "$GUEST_TOOLS_INITRD" "$BH" "$BUILD/bulkhead-console"

system_setup serial-e2e

port_fn='port() { for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = data ] && echo /dev/${p##*/}; done; }'
a_script="$port_fn"'
dd if=/dev/urandom of=/tmp/s bs=1k count=16 2>/dev/null
dd if=/dev/urandom of=/tmp/p bs=1k count=1024 2>/dev/null
echo "a-com2-sum $(md5sum </tmp/s | cut -d" " -f1)"
echo "a-port-sum $(md5sum </tmp/p | cut -d" " -f1)"
exec 3<>/dev/ttyS1
stty raw -echo <&3
head -c 1 <&3 >/dev/null && cat /tmp/s >&3 && echo a-com2-sent
d=$(port); [ -n "$d" ] && cat /tmp/p >"$d" && echo a-port-sent'
b_script="$port_fn"'
exec 3<>/dev/ttyS1
stty raw -echo <&3
( while [ ! -e /tmp/got ]; do printf R >&3; sleep 1; done ) &
head -c 16384 <&3 >/tmp/s; touch /tmp/got
echo "b-com2-sum $(md5sum </tmp/s | cut -d" " -f1)"
d=$(port); [ -n "$d" ] && head -c 1048576 <"$d" >/tmp/p
echo "b-port-sum $(md5sum </tmp/p | cut -d" " -f1)"'

vm() { # NAME SCRIPT
    printf '  %s:\n    kernel: %s\n    initrd: %s\n    memory: 256M\n' "$1" "$GUEST_KERNEL" "$GUEST_TOOLS_INITRD"
    printf '    cmdline: %s\n' "'$APPEND_BASE -- $(guest_script "$2
echo staying-up
while :; do sleep 1000; done")'"
    printf '    console:\n      ports:\n        data:\n'
}
{
    echo "version: 1"
    echo "vms:"
    vm a "$a_script"
    vm b "$b_script"
    echo "serial-links:"
    echo "  - [a:com2, b:com2]"
    echo "  - [a:data, b:data]"
} >"$dir/sys.yaml"

"$BH" check "$dir/sys.yaml" >"$dir/check.out" 2>&1 || { cat "$dir/check.out" >&2; fail "bulkhead check refused the description"; }
"$BH" up "$dir/sys.yaml" --run-dir "$RUN" --log-dir "$LOGD" --detach --pid-file "$dir/pid" \
    >"$dir/up.out" 2>&1 || { cat "$dir/up.out" "$LOGD/supervisor.log" >&2; fail "bulkhead up failed"; }

wait_console b 'b-port-sum' 300
sum() { grep -a "^$2 " "$LOGD/$1.console.log" | tr -d '\r' | cut -d' ' -f2; }
as=$(sum a a-com2-sum) bs=$(sum b b-com2-sum) ap=$(sum a a-port-sum) bp=$(sum b b-port-sum)
[ -n "$as" ] && [ "$as" = "$bs" ] || fail "COM2 link: a sent $as, b received $bs"
[ -n "$ap" ] && [ "$ap" = "$bp" ] || fail "console port link: a sent $ap, b received $bp"
grep -q 'serial link a:com2-b:com2: up' "$LOGD/supervisor.log" || fail "the supervisor did not log the COM2 link"
grep -q 'serial link a:data-b:data: up' "$LOGD/supervisor.log" || fail "the supervisor did not log the port link"
"$BH" down --socket "$RUN/control.sock" --timeout 120 >/dev/null || fail "bulkhead down failed"
pass "serial links: 16 KiB over COM2 and 1 MiB over a virtio-console port, checksums equal"
