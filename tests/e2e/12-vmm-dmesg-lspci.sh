#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The guest's kernel log has no ACPI error or warning and no "Firmware Bug" line, Linux
# accepted MMCONFIG, and lspci shows the PCIe host bridge.
# timeout: 180
# testhost-smp: 2
set -u
. "$(dirname "$0")/lib-vmm.sh"
GUEST_INITRD=$GUEST_TOOLS_INITRD vmm_boot dmesg-lspci 120 'echo ==dmesg==; dmesg; echo ==lspci==; lspci -nn; echo ==end==' --cpus 2
rc=$?
expect_status $rc 0 "boot"
dmesg=$E2E_LOGS/dmesg-lspci.dmesg
sed -n '/^==dmesg==/,/^==lspci==/p' "$LOG" > "$dmesg"
[ -s "$dmesg" ] || fail "no dmesg captured (log: $LOG)"
bad=$(grep -iE 'ACPI (Error|Warning|BIOS Error|BIOS Warning)|ACPI: .*(error|warning)|Firmware Bug|FW_BUG|\[Firmware Warn' "$dmesg")
[ -z "$bad" ] || fail "kernel log has ACPI/firmware complaints: $bad"
expect_in "$dmesg" "ACPI: MCFG"
expect_not_in "$dmesg" "not reserved in ACPI motherboard resources"
expect_in "$dmesg" "is a 16550A"
# pciutils: "00:00.0 Host bridge [0600]: Intel Corporation Device [8086:0d57]" (names only
# when pci.ids is present; the class and IDs always)
grep -E '^00:00\.0 .*\[0600\]: .*\[8086:0d57\]' "$LOG" >/dev/null ||
    fail "lspci does not show the host bridge (log: $LOG)"
echo "ok: clean ACPI boot, host bridge visible"
