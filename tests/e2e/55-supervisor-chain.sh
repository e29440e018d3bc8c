#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# A chain of three VMs from one description (examples/chain.yaml's shape): vm1 -l12- vm2
# -l23- vm3, each link a bulkhead-net point-to-point backend nobody else is on; vm2 routes
# between its two NICs. vm1 pings vm3, fetches a checksummed file from vm3's httpd and runs
# iperf3 to vm3, all through vm2.
# And the supervisor naming a refused system call: vm3's second disk comes from an
# external backend, the test build bulkhead-blk-faulty with --sandbox=trap and
# --fault forbidden-call, which opens an AF_INET socket after a few requests; its seccomp
# list refuses it, the backend ends, and `ctl status` says which call it was. A VM whose
# kernel triple-faults (the fixture of test 16) ends with status 1, and its status names
# the VMM's reason.
# timeout: 600
set -u
. "$(dirname "$0")/lib-vmm.sh"
BH=$BUILD/bulkhead
require_file "$GUEST_TOOLS_INITRD" "$BH" "$BUILD/bulkhead-net" "$BUILD/bulkhead-blk-faulty"

system_setup chain-e2e
truncate -s 16M "$dir/bad.img"
gcc -c -o "$dir/tf.o" tests/e2e/fixtures/triple-fault.S &&
    ld -m elf_x86_64 -static -nostdlib --build-id=none -Ttext=0x200000 -e _start -o "$dir/tf.elf" "$dir/tf.o" ||
    fail "cannot build the triple-fault fixture"

vm1_script='ip link set eth0 up; ip addr add 10.4.1.1/24 dev eth0; ip route add default via 10.4.1.2
for i in $(seq 90); do ping -c 1 -W 1 10.4.2.3 >/dev/null 2>&1 && break; sleep 1; done
ping -c 3 10.4.2.3 >/dev/null && echo chain-ping-ok
for i in $(seq 30); do timeout 10 wget -q -O /tmp/f http://10.4.2.3/f 2>/dev/null && break; sleep 1; done
echo "vm1-sum $(md5sum </tmp/f | cut -d" " -f1)"
iperf3 -c 10.4.2.3 -t 3 >/tmp/i.log 2>&1 && echo chain-iperf-ok && grep receiver /tmp/i.log'
vm2_script='ip link set eth0 up; ip addr add 10.4.1.2/24 dev eth0
ip link set eth1 up; ip addr add 10.4.2.2/24 dev eth1
echo 1 >/proc/sys/net/ipv4/ip_forward && echo vm2-routing'
vm3_script='ip link set eth0 up; ip addr add 10.4.2.3/24 dev eth0; ip route add default via 10.4.2.2
mkdir -p /www; dd if=/dev/urandom of=/www/f bs=1k count=256 2>/dev/null
echo "vm3-sum $(md5sum </www/f | cut -d" " -f1)"
busybox httpd -p 80 -h /www; iperf3 -s -D && echo vm3-serving
dd if=/dev/vda of=/dev/null bs=4k count=256 iflag=direct 2>/dev/null; echo vm3-disk-read'

vm() { # NAME SCRIPT DEVICES...
    local name=$1 script=$2
    shift 2
    printf '  %s:\n    kernel: %s\n    initrd: %s\n    memory: 256M\n' "$name" "$GUEST_KERNEL" "$GUEST_TOOLS_INITRD"
    printf '    cmdline: %s\n' "'$APPEND_BASE -- $(guest_script "$script
echo staying-up
while :; do sleep 1000; done")'"
    printf '    %s\n' "$@"
}
{
    echo "version: 1"
    echo "vms:"
    vm vm1 "$vm1_script" "nics: [{link: l12}]"
    vm vm2 "$vm2_script" "nics: [{link: l12}, {link: l23}]"
    vm vm3 "$vm3_script" "nics: [{link: l23}]" "disks: [{backend: bad}]"
    printf '  crash:\n    kernel: %s\n    memory: 32M\n    restart: never\n' "$dir/tf.elf"
    echo "backends:"
    echo "  l12: {type: p2p}"
    echo "  l23: {type: p2p}"
    echo "  bad: {type: external, device: blk, restart: never, command: [$BUILD/bulkhead-blk-faulty, --socket, '{socket}', --image, $dir/bad.img, --fault, forbidden-call, --fault-after, '8', --sandbox=trap]}"
} >"$dir/sys.yaml"

"$BH" check "$dir/sys.yaml" >"$dir/check.out" 2>&1 || { cat "$dir/check.out" "$dir/sys.yaml" >&2; fail "bulkhead check refused the description"; }
"$BH" up "$dir/sys.yaml" --run-dir "$RUN" --log-dir "$LOGD" --detach --pid-file "$dir/pid" \
    >"$dir/up.out" 2>&1 || { cat "$dir/up.out" "$LOGD/supervisor.log" >&2; fail "bulkhead up failed"; }

wait_console vm1 'chain-iperf-ok|staying-up' 300
for m in chain-ping-ok chain-iperf-ok; do
    grep -aq "^$m" "$LOGD/vm1.console.log" || { tail -20 "$LOGD/vm1.console.log" >&2; fail "vm1: no $m"; }
done
s1=$(grep -a '^vm1-sum' "$LOGD/vm1.console.log" | tr -d '\r' | cut -d' ' -f2)
s3=$(grep -a '^vm3-sum' "$LOGD/vm3.console.log" | tr -d '\r' | cut -d' ' -f2)
[ -n "$s3" ] && [ "$s1" = "$s3" ] || fail "vm1 fetched a file with sum '$s1', vm3 served '$s3'"
note "chain: vm1 reaches vm3 through vm2 (ping, a checksummed file, iperf3)"
grep -a 'receiver' "$LOGD/vm1.console.log" | sed 's/^/  /' >&2

# The faulty backend's refused call, named by the supervisor.
for _ in $(seq 150); do "$BH" ctl --socket "$RUN/control.sock" --json status bad | grep -q '"state":"exited"' && break; sleep 0.2; done
"$BH" ctl --socket "$RUN/control.sock" --json status bad >"$dir/bad.json"
grep -q '"state":"exited"' "$dir/bad.json" || { cat "$dir/bad.json" "$LOGD/bad.log" >&2; fail "the faulty backend did not end"; }
grep -q 'stopped by its seccomp allowlist: system call socket (41)' "$dir/bad.json" ||
    { cat "$dir/bad.json" "$LOGD/bad.log" >&2; fail "ctl status does not name the refused call"; }
grep -q 'bad: .*stopped by its seccomp allowlist: system call socket' "$LOGD/supervisor.log" ||
    fail "the supervisor's log does not name the refused call"
note "the backend that opened an AF_INET socket: ended by its seccomp list, the supervisor names socket (41)"

# The VM whose guest triple-faulted: the VMM's own reason, in its status.
"$BH" ctl --socket "$RUN/control.sock" --json status crash >"$dir/crash.json"
grep -q '"state":"exited"' "$dir/crash.json" && grep -q 'exited with status 1 (VM stopped: triple fault on vCPU 0' "$dir/crash.json" ||
    { cat "$dir/crash.json" "$LOGD/crash.log" >&2; fail "ctl status of the triple-faulted VM does not say why it ended"; }
note "the triple-faulted VM: $(grep -o '"last_exit":"[^"]*"' "$dir/crash.json")"
"$BH" down --socket "$RUN/control.sock" --timeout 120 >/dev/null || fail "bulkhead down failed"
pass "a chain of three VMs routes through the middle one; a refused system call and a VM's failure are named"
