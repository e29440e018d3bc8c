#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The binary a hostile guest talks to is hardened: a static position-independent
# executable (ELF type DYN, no interpreter), loaded at a different address each run
# (ASLR); and a program name of any length (argv[0] is the caller's choice) cannot
# overflow the log line: it used to with 1015+ characters.
# timeout: 240
set -u
. "$(dirname "$0")/lib-vmm.sh"

hdr=$(readelf -h "$VMM") || fail "readelf -h $VMM failed"
grep -q 'Type: *DYN' <<<"$hdr" || fail "$VMM is not position-independent: $(grep Type: <<<"$hdr")"
if readelf -l "$VMM" | grep -q 'Requesting program interpreter'; then
    fail "$VMM is dynamically linked (it has a program interpreter)"
fi

# load_base: the address the kernel mapped the VMM's first segment at, read from the
# running process (the guest is stopped at once; only the mapping matters).
load_base() {
    local pid base=
    "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --shutdown-timeout 0 \
        --cmdline "$APPEND_BASE -- sleep 60" </dev/null >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        base=$(awk -v exe="$(readlink -f "$VMM")" '$6 == exe { split($1, a, "-"); print a[1]; exit }' \
            "/proc/$pid/maps" 2>/dev/null)
        [ -n "$base" ] && break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [ -n "$base" ] || fail "could not read the VMM's mapping from /proc/$pid/maps"
    echo "$base"
}
[ "$(cat /proc/sys/kernel/randomize_va_space)" != 0 ] || fail "ASLR is off in the test host"
a=$(load_base)
b=$(load_base)
note "load addresses: $a, $b"
[ "$a" != "$b" ] || fail "two runs loaded the VMM at the same address $a: no ASLR"

# A 2000-character argv[0] and a usage error: one line, cut to the line limit, status 2.
long=$(printf 'x%.0s' $(seq 1 2000))
err=$E2E_LOGS/long-name.err
(exec -a "$long" "$VMM" --cpus 0 --kernel "$GUEST_KERNEL") </dev/null >/dev/null 2>"$err"
expect_status $? 2 "a usage error under a 2000-character program name"
# The same name on the log path (level info logs lines with the program name).
log=$E2E_LOGS/long-name-log.err
(exec -a "$long" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --log-level debug \
    --cmdline "$APPEND_BASE -- true") </dev/null >"$E2E_LOGS/long-name-log.out" 2>"$log"
expect_status $? 0 "a guest run under a 2000-character program name"
maxlen=$(awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }' "$log")
[ "$maxlen" -lt 1024 ] || fail "a log line of $maxlen characters (limit 1023)"
expect_in "$log" '^x{64}: info: start-up: first vCPU entry'

pass "static-pie, ASLR ($a vs $b), long program name"
