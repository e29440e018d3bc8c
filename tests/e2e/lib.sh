# shellcheck shell=bash
# SPDX-License-Identifier: BSD-2-Clause
# Helpers for bulkhead's end-to-end tests. Source it first thing:
#
#     #!/bin/bash
#     # timeout: 300          <- optional: seconds for the whole script,
#     #                           test host boot included (default 300)
#     . "$(dirname "$0")/lib.sh"
#     require_vmm
#     log=$(test_log boot)
#     guest_run 60 "$log" "$VMM" ... -- ...
#     expect_status $? 0 "the VMM"
#     expect_guest_exit "$log" 0
#     expect_in "$log" '^hello$'
#     pass
#
# A test runs INSIDE the test host (tests/run starts it with tools/testhost),
# as root, with /dev/kvm, in the repository's root directory, which is shared
# read-write with the machine (logs written there persist); the rest of the
# filesystem is a throwaway overlay. Exit status: 0 pass, 77 skipped, anything
# else fail (fail and skip below do this); tests/run counts a skip as a
# failure too unless told otherwise (docs/testing.md), so skip only for what
# a machine may legitimately lack. lib.sh does not `set -e`: check statuses
# yourself (guest_run returns the VMM's status, 124 on timeout).
#
# Guest convention (guest/init, docs/testing.md): the guest kernel's command
# line is "$GUEST_APPEND -- COMMAND"; the guest prints $READY_MARKER, runs
# COMMAND with `sh -c` on the serial console, prints "$EXIT_MARKER<status>"
# and powers off. The kernel's parser eats double quotes: quote COMMAND's
# arguments with single quotes. At most 32 words may follow `--` (more panic
# the guest kernel): use guest_script for anything longer.

# Where things are. Tests may override any of these before using them.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$REPO/build}
# The VMM under test.
VMM=${VMM:-$BUILD/bulkhead-vmm}
# Debian's cloud-amd64 kernel: bzImage, and its ELF for PVH boots.
GUEST_KERNEL=${GUEST_KERNEL:-$BUILD/guest/vmlinuz}
GUEST_VMLINUX=${GUEST_VMLINUX:-$BUILD/guest/vmlinux}
# Small initramfs (busybox + virtio modules) and the one that also carries
# fio, iperf3, socat, e2fsprogs (mkfs.ext4) and ethtool.
GUEST_INITRD=${GUEST_INITRD:-$BUILD/guest/initrd.cpio.gz}
GUEST_TOOLS_INITRD=${GUEST_TOOLS_INITRD:-$BUILD/guest/initrd-tools.cpio.gz}
# Base guest command line, the same for every VMM: serial console, no boot
# log (each console byte costs ~0.3 ms in the test host), reboot (so the VMM
# exits) on panic, and no crypto self-tests at boot (they cost tenths of a
# second under emulation and test the kernel, not the VMM).
GUEST_APPEND=${GUEST_APPEND:-"console=ttyS0 quiet panic=-1 cryptomgr.notests"}
READY_MARKER=BULKHEAD-GUEST-READY
EXIT_MARKER=BULKHEAD-GUEST-EXIT=
# The test's name and its log directory (tests/run sets both, through the
# environment; by hand they default to the script's name).
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
TEST_LOG_DIR=${TEST_LOG_DIR:-$BUILD/test-logs/$TEST_NAME}
mkdir -p "$TEST_LOG_DIR"
cd "$REPO" || exit 1

# note MESSAGE...: a progress line on stderr, prefixed with the test's name.
note() {
    echo "[$TEST_NAME] $*" >&2
}

# fail MESSAGE...: print "FAIL: MESSAGE" and end the test as failed (exit 1).
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# skip REASON...: end the test as skipped (exit 77); tests/run reports it as
# SKIPPED, never as passed.
skip() {
    echo "SKIP: $*" >&2
    exit 77
}

# pass [MESSAGE...]: end the test as passed.
pass() {
    echo "PASS: ${*:-$TEST_NAME}" >&2
    exit 0
}

# test_log NAME: print the path of a log file NAME.log in this test's log
# directory (build/test-logs/<test>/), for guest_run and friends.
test_log() {
    echo "$TEST_LOG_DIR/$1.log"
}

# now_ms: wall-clock milliseconds, for timing steps.
now_ms() {
    echo $((${EPOCHREALTIME/./} / 1000))
}

# require_kvm: fail unless /dev/kvm is usable (it always is in the test host).
require_kvm() {
    [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || fail "/dev/kvm is not usable"
}

# require_vmm: fail unless the VMM binary has been built. A missing binary is
# a failure, not a skip: a suite that quietly tests nothing must not pass
# (tests/run builds it, with `make all`, before running anything).
require_vmm() {
    [ -x "$VMM" ] || fail "$VMM is not built (make vmm)"
}

# require_file FILE...: fail unless every FILE exists (guest images, ...).
require_file() {
    local f
    for f in "$@"; do
        [ -e "$f" ] || fail "missing $f"
    done
}

# run_timeout SECONDS CMD...: run CMD with stdin from /dev/null, killing it
# after SECONDS (SIGTERM, then SIGKILL 5 s later). Returns CMD's status, or
# 124 after a one-line "TIMEOUT:" message on stderr.
run_timeout() {
    local secs=$1 rc
    shift
    timeout -k 5 "$secs" "$@" </dev/null
    rc=$?
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        echo "TIMEOUT: '$*' did not finish within $secs s" >&2
        return 124
    fi
    return $rc
}

# guest_run TIMEOUT LOGFILE CMD...: run a VMM (ours, or QEMU as the peer)
# that boots a guest, with a TIMEOUT in seconds, its stdout and stderr (the
# guest's serial console) captured in LOGFILE with carriage returns removed.
# The guest must reach its ready marker: if it does not, the test fails with
# the end of LOGFILE shown, with one exception. A QEMU run (the reference
# peer, not what is under test) is repeated once after a "RETRY:" line on
# stderr (tests/run shows it; the first log is kept as LOGFILE.1), because the
# emulated test host occasionally stalls a guest. Our own VMM ($VMM, or any
# other command) gets no second chance: a bulkhead boot that hangs now and
# then is a bug to see, not to retry away.
# Returns the status of the (last) run: the VMM's, or 124 on timeout.
# Runs whose guest is not expected to boot should use run_timeout instead.
guest_run() {
    local secs=$1 log=$2 rc attempt t0 tries=1
    shift 2
    case ${1##*/} in qemu-system-*) tries=2 ;; esac
    mkdir -p "$(dirname "$log")"
    for ((attempt = 1; ; attempt++)); do
        t0=$(now_ms)
        run_timeout "$secs" "$@" >"$log" 2>&1
        rc=$?
        sed -i 's/\r$//' "$log"
        t0=$(($(now_ms) - t0))
        note "guest_run: status $rc after $((t0 / 1000)).$((t0 % 1000 / 100)) s (log $log)"
        grep -q "^$READY_MARKER\$" "$log" && return $rc
        [ "$attempt" -lt "$tries" ] || break
        cp "$log" "$log.1"
        echo "RETRY: $TEST_NAME: ${1##*/}'s guest never printed $READY_MARKER" \
            "(status $rc, log $log.1); trying once more" >&2
    done
    show_log "$log" 40
    fail "${1##*/}: the guest never printed $READY_MARKER (status $rc, attempt $attempt of $tries; log $log)"
}

# guest_exit_status LOGFILE: print the status the guest command reported
# (the last "BULKHEAD-GUEST-EXIT=<n>" line); returns 1 if there is none.
guest_exit_status() {
    local st
    st=$(sed -n "s/^$EXIT_MARKER\\([0-9][0-9]*\\)\$/\\1/p" "$1" | tail -n 1)
    [ -n "$st" ] || return 1
    echo "$st"
}

# show_log FILE: the last lines of FILE on stderr, to explain a failure.
show_log() {
    echo "--- last lines of $1:" >&2
    tail -n "${2:-25}" "$1" >&2
    echo "---" >&2
}

# expect_status ACTUAL EXPECTED WHAT: fail unless a status is as expected.
expect_status() {
    [ "$1" = "$2" ] || fail "$3 exited with status $1, expected $2"
}

# expect_in FILE PATTERN: fail unless a line of FILE matches the extended
# regular expression PATTERN (shows the end of FILE when it does not).
expect_in() {
    if ! grep -q -E -- "$2" "$1"; then
        show_log "$1"
        fail "expected a line matching /$2/ in $1"
    fi
}

# expect_not_in FILE PATTERN: fail if a line of FILE matches PATTERN.
expect_not_in() {
    if grep -q -E -- "$2" "$1"; then
        grep -n -E -- "$2" "$1" | head -n 5 >&2
        fail "unexpected line matching /$2/ in $1"
    fi
}

# expect_guest_exit LOGFILE STATUS: fail unless the guest booted (ready
# marker) and its command reported STATUS.
expect_guest_exit() {
    local st
    expect_in "$1" "^$READY_MARKER\$"
    st=$(guest_exit_status "$1") || {
        show_log "$1"
        fail "the guest did not report an exit status in $1"
    }
    [ "$st" = "$2" ] || {
        show_log "$1"
        fail "the guest command exited $st, expected $2 ($1)"
    }
}

# guest_script SCRIPT: print a short guest command (for after `--`) that runs
# the multi-line shell SCRIPT in the guest. The kernel panics ("Too many boot
# init vars") when more than 32 words follow `--`, its command line holds at
# most 2047 bytes, and it eats double quotes; SCRIPT travels base64-encoded in
# one word instead (busybox base64 decodes it to /tmp/s, sh runs it with the
# console as stdin). Keep SCRIPT under ~1400 bytes.
guest_script() {
    echo "echo $(printf '%s\n' "$1" | base64 -w 0)|base64 -d >/tmp/s;sh /tmp/s"
}

# QEMU, the reference peer, runs the guest with the test host's CPU minus the
# TSC-deadline timer, as bulkhead-vmm does (src/platform/kvm/kvm_vcpu.c):
# under nested SVM in the test host, TSC-deadline wake-ups of a halted vCPU
# get lost, and the guest stalls for tens of seconds ("rcu_preempt kthread
# timer wakeup didn't happen"). Without the bit Linux uses the LAPIC one-shot
# timer, and both VMMs give the guest the same timer. docs/testing.md has the
# measurement. (bench/ and tools/measure-hangs use the same -cpu value.)
QEMU_GUEST_CPU=host,-tsc-deadline

# qemu_guest_cmd INITRD COMMAND [QEMU_ARGS...]: set the array QEMU_CMD to the
# QEMU command line that boots the test guest on the test host's KVM with
# INITRD and runs COMMAND in it (after "$GUEST_APPEND --"): 256 MiB, one
# vCPU unless QEMU_ARGS (or the array QEMU_EXTRA, which a test may set) say
# otherwise, console on stdio, exit on reset.
qemu_guest_cmd() {
    local initrd=$1 cmd=$2
    shift 2
    QEMU_CMD=(qemu-system-x86_64 -enable-kvm -M pc -cpu "$QEMU_GUEST_CPU" -m 256
        -nodefaults -no-reboot -serial stdio -display none
        -kernel "$GUEST_KERNEL" -initrd "$initrd" "${QEMU_EXTRA[@]}" "$@"
        -append "$GUEST_APPEND -- $cmd")
}
QEMU_EXTRA=()

# qemu_guest TIMEOUT LOGFILE INITRD COMMAND [QEMU_ARGS...]: boot the test guest
# with Debian's QEMU (qemu_guest_cmd) and run COMMAND in it, through
# guest_run (so a run whose guest never comes up is retried once).
qemu_guest() {
    local secs=$1 log=$2
    shift 2
    qemu_guest_cmd "$@"
    guest_run "$secs" "$log" "${QEMU_CMD[@]}"
}
