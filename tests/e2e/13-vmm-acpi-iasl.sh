#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The ACPI tables as the guest sees them (/sys/firmware/acpi/tables) disassemble with
# iasl -d without errors.
# timeout: 240
set -u
. "$(dirname "$0")/lib-vmm.sh"
command -v iasl >/dev/null || fail "iasl (acpica-tools) is missing"
# No double quotes in guest commands: the kernel's command-line parser eats them.
vmm_boot acpi-iasl 120 'cd /sys/firmware/acpi/tables && for t in *; do [ -f $t ] && echo ==table $t && base64 $t; done; echo ==end'
rc=$?
expect_status $rc 0 "boot"
dir=$E2E_LOGS/acpi-tables
rm -rf "$dir"
mkdir -p "$dir"
tables=$(sed -n 's/^==table \([A-Z0-9]*\)\r*$/\1/p' "$LOG")
for want in DSDT FACP APIC MCFG FACS; do
    grep -qx "$want" <<<"$tables" || fail "the guest does not list ACPI table $want (got: $tables)"
done
for t in $tables; do
    sed -n "/^==table $t\r*\$/,/^==/p" "$LOG" | sed '1d;$d' | tr -d '\r' | base64 -d > "$dir/$t.dat" ||
        fail "cannot decode table $t"
    (cd "$dir" && iasl -d "$t.dat" > "$t.iasl.log" 2>&1) || fail "iasl -d $t failed: $(tail -5 "$dir/$t.iasl.log")"
    errs=$(grep -iE 'error|warning' "$dir/$t.iasl.log" | grep -viE '(^|[^0-9])0 (errors|warnings)')
    [ -z "$errs" ] || fail "iasl reports problems for $t: $errs"
    [ -s "$dir/$t.dsl" ] || fail "iasl produced no disassembly for $t"
done
grep -q 'PNP0A08' "$dir/DSDT.dsl" || fail "DSDT has no PCIe root bridge"
grep -q '_S5' "$dir/DSDT.dsl" || fail "DSDT has no _S5"
echo "ok: $(echo $tables | wc -w) tables disassemble cleanly"
