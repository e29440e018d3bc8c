#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# timeout: 240
# The tools guest image works: every tool later device tests rely on runs in
# the guest (booted with Debian's QEMU): fio does a small job, mkfs.ext4
# formats an image file, iperf3 talks to itself over loopback, socat relays,
# ethtool answers, lspci names the host bridge; a failing command's status
# comes back.
. "$(dirname "$0")/lib.sh"
require_kvm
require_file "$GUEST_KERNEL" "$GUEST_TOOLS_INITRD"

# One boot for everything (each boot costs several seconds here), as a
# script: it is longer than the 32 words a kernel command line may pass to
# init. Output goes through the serial console: keep it short.
script='
fio --name=t --filename=/tmp/f --size=2M --bs=4k --rw=randwrite --ioengine=psync \
    --minimal >/tmp/fio.out && echo fio-ok
mkfs.ext4 -q -F /tmp/img 8M && dumpe2fs -h /tmp/img 2>/dev/null | grep -q "Filesystem magic" &&
    echo mkfs-ok
iperf3 -s -1 -D && sleep 1 && iperf3 -c 127.0.0.1 -t 1 >/dev/null && echo iperf3-ok
echo hello | socat - SYSTEM:cat | grep -qx hello && echo socat-ok
ethtool lo | grep -q "Link detected: yes" && echo ethtool-ok
lspci -nn | grep -q "Host bridge \[0600\]" && echo lspci-ok
exit 3
'
log=$(test_log qemu-tools-guest)
qemu_guest 150 "$log" "$GUEST_TOOLS_INITRD" "$(guest_script "$script")"
expect_status $? 0 "QEMU"
for t in fio mkfs iperf3 socat ethtool lspci; do
    expect_in "$log" "^$t-ok\$"
done
expect_guest_exit "$log" 3
pass "fio, mkfs.ext4, iperf3, socat, ethtool and lspci run in the tools guest"
