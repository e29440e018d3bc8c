#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Checks tools/testhost itself, from this machine (tests/run runs it before
# the end-to-end tests, which all depend on it):
#   - `tools/testhost -- sh -c 'test -c /dev/kvm && echo kvm-ok'` prints
#     kvm-ok and exits 0;
#   - `tools/testhost -- false` exits 1 (statuses come back);
#   - the working directory is shared read-write and persists, the rest of
#     the filesystem is a throwaway overlay, stdout and stderr stay apart,
#     BULKHEAD_*/TEST_* variables pass and others do not, bash's process
#     substitution works (/dev/fd), and --smp 2 gives the test host 2 CPUs
#     (tests/run uses it for multi-vCPU tests);
#   - `--timeout 5 -- sleep 60` ends with status 124 and a TIMEOUT line.
# Exit 0 when all hold; prints "ok - ..." / "not ok - ..." per check.
set -uo pipefail
REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
TH=$REPO/tools/testhost
work=$REPO/build/test-logs/testhost-selftest
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1
bad=0
ok() { echo "ok - $*"; }
notok() {
    echo "not ok - $*"
    bad=1
}

# 1. /dev/kvm in the test host.
out=$("$TH" -- sh -c 'test -c /dev/kvm && echo kvm-ok' 2>err1)
rc=$?
if [ $rc = 0 ] && [ "$out" = kvm-ok ]; then
    ok "/dev/kvm works in the test host"
else
    notok "/dev/kvm: status $rc, output '$out' (expected kvm-ok, 0)"
    cat err1
fi

# 2. A failing command's status comes back.
"$TH" -- false 2>err2
rc=$?
if [ $rc = 1 ]; then
    ok "tools/testhost -- false exits 1"
else
    notok "tools/testhost -- false exited $rc, expected 1"
    cat err2
fi

# 3. Filesystem, streams and environment.
marker=/etc/bulkhead-testhost-selftest-$$
TEST_SELFTEST_VAR='two words' BULKHEAD_SELFTEST_VAR=b OTHER_SELFTEST_VAR=c \
    "$TH" --smp 2 -- bash -c '
        echo "cwd=$PWD"
        echo "cpus=$(nproc)"
        cat <(echo process-substitution-ok)
        echo persisted >written-inside
        touch '"$marker"' && echo overlay-writable
        echo "vars=[$TEST_SELFTEST_VAR][$BULKHEAD_SELFTEST_VAR][${OTHER_SELFTEST_VAR:-unset}]"
        echo to-stderr >&2
        exit 7' >out3 2>err3
rc=$?
if [ $rc = 7 ] &&
    grep -qx "cwd=$work" out3 &&
    grep -qx cpus=2 out3 &&
    grep -qx process-substitution-ok out3 &&
    grep -qx overlay-writable out3 &&
    grep -qx 'vars=\[two words\]\[b\]\[unset\]' out3 &&
    grep -qx to-stderr err3 && ! grep -q to-stderr out3 &&
    [ "$(cat written-inside 2>/dev/null)" = persisted ] &&
    [ ! -e "$marker" ]; then
    ok "cwd persists, overlay is discarded, stdout/stderr apart, variables filtered, /dev/fd, --smp 2"
else
    notok "filesystem/streams/environment (status $rc)"
    sed 's/^/    out: /' out3
    sed 's/^/    err: /' err3
fi

# 4. Timeouts end in status 124 with a clear message.
t0=$SECONDS
"$TH" --timeout 5 -- sleep 60 2>err4
rc=$?
if [ $rc = 124 ] && grep -q '^testhost: TIMEOUT' err4 && [ $((SECONDS - t0)) -lt 30 ]; then
    ok "--timeout 5 -- sleep 60 exits 124 after $((SECONDS - t0)) s"
else
    notok "--timeout 5 -- sleep 60: status $rc after $((SECONDS - t0)) s"
    cat err4
fi

exit $bad
