#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Bad user input gets one clear error line and exit status 2.
# timeout: 120
set -u
. "$(dirname "$0")/lib-vmm.sh"
notkernel=$E2E_LOGS/not-a-kernel.bin
head -c 100000 /dev/urandom > "$notkernel"
check() { # EXPECTED_WORD ARGS...
    local word=$1
    shift
    local err
    # A timeout, in case a bad check ever boots a guest instead of refusing it.
    err=$(run_timeout 30 "$VMM" "$@" 2>&1 >/dev/null < /dev/null)
    local rc=$?
    [ $rc -eq 2 ] || fail "'$*' exited $rc, expected 2 (stderr: $err)"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "'$*' printed more than one line: $err"
    grep -qi -- "$word" <<<"$err" || fail "'$*': the message does not name '$word': $err"
    echo "  $* -> $err"
}
check "no-such-kernel" --kernel /no-such-kernel
check "not a bzImage" --kernel "$notkernel"
check "is not a regular file" --kernel /
check "no-such-initrd" --kernel "$GUEST_KERNEL" --initrd /no-such-initrd
check "--mem" --kernel "$GUEST_KERNEL" --mem 0
check "--mem" --kernel "$GUEST_KERNEL" --mem 12x
check "--cpus" --kernel "$GUEST_KERNEL" --cpus 0
check "--cpus" --kernel "$GUEST_KERNEL" --cpus 100000
check "--cpus" --kernel "$GUEST_KERNEL" --cpus 255
check "--serial" --kernel "$GUEST_KERNEL" --serial tcp:1
check "--bogus" --kernel "$GUEST_KERNEL" --bogus
check "--kernel" --mem 1G
check "--control" --kernel "$GUEST_KERNEL" --control /etc/passwd
check "--control" --kernel "$GUEST_KERNEL" --control /no-such-dir/vm.sock
check "--control" --kernel "$GUEST_KERNEL" --control ""
check "--net" --kernel "$GUEST_KERNEL" --net tap=t0,socket=/s
check "mac=" --kernel "$GUEST_KERNEL" --net tap=t0,mac=01:02:03:04:05:06
check "cid=2" --kernel "$GUEST_KERNEL" --vsock cid=2,uds=/tmp/v
check "tag=" --kernel "$GUEST_KERNEL" --fs socket=/tmp/fs.sock
check "out=" --kernel "$GUEST_KERNEL" --console out=tcp:1
check "--rng" --kernel "$GUEST_KERNEL" --rng on
echo "ok: every bad input gave one line and status 2"
