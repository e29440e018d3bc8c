#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Hostile disk backends. A guest has two disks: vda is served by a healthy bulkhead-blk
# (--disk path=IMG), vdb by bulkhead-blk-faulty (the test build of bulkhead-blk with
# fault injection, src/vhost/faults.h) listening on a socket (--disk socket=PATH). The
# faulty backend serves 32 requests on each connection, then breaks the protocol one way:
#   bad-used-id, used-twice, len-over, idx-jump, close-mid-request: on the data path;
#   no-reply: it never answers the device's start (SET_MEM_TABLE), 5 s timeout each time;
#   bad-config-size: a GET_CONFIG reply of the wrong size;
#   stall: it stops completing requests but answers every message (the VMM's request
#   deadline, timeout=2 here, finds it).
# It misbehaves the same way on every new connection, so bulkhead-vmm drops it, reconnects
# (5 new backends in a row, none lasting 60 s), and gives up on it.
#
# Isolated mode (each fault): the VMM logs what the backend did and that it gave up on
# disk1; the guest's fio on vdb ends with I/O errors (none hangs); a verified fio on vda
# passes, no vda request fails, and the guest powers off: the VMM exits 0.
# Shared mode (close-mid-request): the backend serves the guest's rings itself, so the
# request it held is lost with it and the guest's I/O on vdb may hang rather than fail
# (Linux's virtio_blk does not act on DEVICE_NEEDS_RESET); the VMM must log the loss, mark
# the device as needing a reset, stay up, and vda must work as above. Not in shared mode:
# the faults of the used ring (the guest's driver sees those, not the VMM) and no-reply
# (the guest's first read of vdb, its partition table while virtio_blk probes at boot,
# would never be served, and the guest's init waits for that probe).
# bad-config-size: bulkhead-vmm fetches the configuration only when it creates the device,
# before the guest runs, so it refuses to start the VM (status 1, one error line naming
# disk1) within seconds and leaves no backend child behind.
# About 3.5 min. A 1-CPU test host, as every disk test (docs/testing.md, "Hangs": 2-CPU
# test hosts corrupt guests under disk load).
# timeout: 600
set -u
. "$(dirname "$0")/lib-vmm.sh"
FAULTY=$BUILD/bulkhead-blk-faulty
# A missing test build is a failure, not a skip (tests/run builds it with `make faulty`).
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-blk" "$FAULTY"

dir=$(mktemp -d /tmp/hostile.XXXXXX) || fail "mktemp"
faulty_pid=
cleanup() {
    [ -n "$faulty_pid" ] && kill -KILL "$faulty_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
good=$dir/good.raw
bad=$dir/bad.raw
sock=$dir/bad.sock
t_start=$(now_ms)

# Fault injection is in the test build only; an unknown fault is one error line, status 2.
truncate -s 1M "$dir/cli.raw"
"$BUILD/bulkhead-blk" --image "$dir/cli.raw" --socket "$dir/cli.sock" --fault idx-jump \
    >"$dir/cli.out" 2>&1
expect_status $? 2 "bulkhead-blk --fault"
expect_in "$dir/cli.out" "^bulkhead-blk: error: unknown option '--fault'"
"$FAULTY" --image "$dir/cli.raw" --socket "$dir/cli.sock" --fault no-such-fault >"$dir/cli.out" 2>&1
expect_status $? 2 "bulkhead-blk-faulty --fault no-such-fault"
[ "$(wc -l <"$dir/cli.out")" = 1 ] || { show_log "$dir/cli.out"; fail "more than one error line"; }
expect_in "$dir/cli.out" "error: --fault: unknown kind 'no-such-fault'"

# The guest: fio reads vdb at queue depth 8 (used-twice needs two requests in flight) in
# the background, W tenths of a second at most; then a verified fio on vda; then it stays
# up until U seconds after its boot. What happened on vdb is reported as vdb-io-eio (fio
# failed with EIO), vdb-io-status=N or vdb-io-hung. Nothing on vdb may hold the guest up:
# a request a shared-mode backend took with it never completes, and the reader sits in D
# state, so the guest never waits for it unbounded.
script=$(cat <<'GUEST'
n=0
while ! { [ -b /dev/vda ] && [ -b /dev/vdb ]; } && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
(fio --name=bad --filename=/dev/vdb --rw=randread --bs=4k --size=48M --ioengine=libaio \
    --iodepth=8 --direct=1 --randrepeat=1 >/tmp/bad.log 2>&1; echo $? >/tmp/bad.rc) &
n=0
while [ ! -f /tmp/bad.rc ] && [ $n -lt $W ]; do sleep 0.1; n=$((n + 1)); done
if [ ! -f /tmp/bad.rc ]; then
    echo vdb-io-hung
else
    echo "vdb-io-status=$(cat /tmp/bad.rc)"
    grep -q 'Input/output error' /tmp/bad.log && echo vdb-io-eio
    grep -m 1 'error' /tmp/bad.log
fi
if fio --name=good --filename=/dev/vda --rw=randwrite --bs=4k --size=8M --ioengine=libaio \
    --iodepth=8 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=1 \
    >/tmp/good.log 2>&1; then
    echo vda-verified
else
    echo vda-failed; tail -n 10 /tmp/good.log
fi
while [ "$(cut -d . -f 1 /proc/uptime)" -lt $U ]; do sleep 1; done
GUEST
)

# start_faulty NAME KIND: fresh images, and bulkhead-blk-faulty listening on $sock.
start_faulty() {
    rm -f "$good" "$bad" "$sock"
    truncate -s 64M "$good" "$bad"
    BLOG=$E2E_LOGS/$1.backend.log
    "$FAULTY" --image "$bad" --socket "$sock" --fault "$2" --log-level info >"$BLOG" 2>&1 &
    faulty_pid=$!
    for _ in $(seq 200); do [ -S "$sock" ] && return; sleep 0.05; done
    show_log "$BLOG"
    fail "$1: bulkhead-blk-faulty did not listen on $sock"
}

# stop_faulty: SIGTERM, which it must still obey after all it did.
stop_faulty() {
    kill -TERM "$faulty_pid" 2>/dev/null
    local rc
    wait "$faulty_pid"
    rc=$?
    faulty_pid=
    [ "$rc" = 0 ] || { show_log "$BLOG"; fail "bulkhead-blk-faulty exited $rc on SIGTERM"; }
}

# check_healthy_disk: vda worked, and nothing of disk0 failed or was lost.
check_healthy_disk() {
    expect_in "$LOG" '^vda-verified$'
    expect_not_in "$LOG" 'I/O error, dev vda|disk0: (backend|the backend|the new backend|queue [0-9]+: (backend|malformed))'
    expect_in "$LOG" 'disk0: queue 0: [1-9][0-9]* requests, .* 0 failed'
}

# run_guest NAME KIND MODE W U: boot the guest with both disks, vdb on the faulty backend
# in MODE; W, U: as in the guest's script.
run_guest() {
    local name=$1 kind=$2 mode=$3 t0
    start_faulty "$name" "$kind"
    LOG=$E2E_LOGS/$name.log
    t0=$(now_ms)
    guest_run 180 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
        --mem 256M --log-level info --disk "path=$good" --disk "socket=$sock,mode=$mode${VDB_OPTS:-}" \
        --cmdline "$APPEND_BASE -- $(guest_script "W=$4 U=$5
$script")"
    local rc=$?
    note "$name: the guest ran $(($(now_ms) - t0)) ms"
    stop_faulty
    expect_status $rc 0 "bulkhead-vmm ($name)"
    expect_guest_exit "$LOG" 0
    check_healthy_disk
}

# isolated KIND REASON [U]: the fault in isolated mode; REASON is how the VMM's log names
# it; the guest stays up until U s after its boot (default 0).
isolated() {
    local kind=$1 reason=$2 name=iso-$1
    run_guest "$name" "$kind" isolated 900 "${3:-0}"
    expect_in "$LOG" "disk1: $reason"
    expect_in "$LOG" 'disk1: 5 new backends in a row failed within 60 s; giving up on it'
    expect_in "$LOG" 'disk1: backend failed too often: .*requests fail with I/O errors'
    expect_in "$LOG" 'disk1: queue 0: .* [1-9][0-9]* failed'
    expect_in "$LOG" '^vdb-io-eio$'
    expect_in "$LOG" '^vdb-io-status=[1-9]'
    # The data-path faults wait for 32 good requests: the partition scan at boot worked.
    [ "$kind" = no-reply ] || expect_not_in "$LOG" 'Buffer I/O error on dev vdb'
    # The fault struck on each of the 6 connections (the first and 5 reconnections).
    local n
    n=$(count_in "$BLOG" 'warn: fault: ')
    [ "$n" -ge 6 ] || { show_log "$BLOG"; fail "$name: the fault struck $n times, expected 6 or more"; }
    note "$name: vdb failed with I/O errors after the VMM gave up on its backend; vda verified"
}

# The faults of the used ring: the VMM's check that catches each.
isolated bad-used-id 'queue 0: backend broke the shadow ring: used id is not a descriptor index'
isolated used-twice 'queue 0: backend broke the shadow ring: used id is not a chain in flight'
isolated len-over 'queue 0: backend broke the shadow ring: used len larger than the writable space offered'
isolated idx-jump 'queue 0: backend broke the shadow ring: used idx ran ahead of the chains in flight'
isolated close-mid-request 'backend connection lost: .*reconnecting'
expect_in "$BLOG" 'fault: head [0-9]+ never returned; shutting the connection down'
# No reply to the device's start: the 5 s deadline, 6 times, and back-off: the VMM gives
# up some 33 s into the guest's life, so the guest stays up for 45 s. (Its reads of vdb
# may fail before that: after 10 s without a working backend the VMM fails the disk's
# requests until one is back.)
isolated no-reply "backend refused the device's start: Connection timed out; reconnecting" 45
expect_in "$LOG" 'disk1: the new backend failed: Connection timed out'

# A backend that answers every message but never completes a request again (hung on its
# storage): only the VMM's request deadline, --disk ...,timeout= (2 s here), sees it.
VDB_OPTS=,timeout=2 isolated stall 'queue 0: the backend holds [0-9]+ request\(s\) and completed none in 2 s'
expect_in "$LOG" 'disk1: backend stopped completing requests: Connection timed out; reconnecting'

# Shared mode. The backend takes a request and hangs up: the VMM reconnects, but the
# guest's rings went with the old backend, so the device needs a reset.
run_guest shared-close-mid-request close-mid-request shared 100 0
expect_in "$LOG" 'disk1: backend connection lost: .*reconnecting'
expect_in "$LOG" 'virtio-pci disk1: device needs reset: backend lost'
expect_in "$LOG" 'disk1: backend back \(restart 1\)'
expect_in "$LOG" '^(vdb-io-hung|vdb-io-eio)$'
note "shared, close-mid-request: $(grep -E '^vdb-io-(hung|eio)$' "$LOG"); the VMM marked disk1 for a reset; vda verified"

# A GET_CONFIG reply of the wrong size, which only the device's creation asks for.
start_faulty bad-config-size bad-config-size
LOG=$E2E_LOGS/bad-config-size.log
t0=$(now_ms)
run_timeout 60 "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" --mem 256M \
    --log-level info --disk "path=$good" --disk "socket=$sock" >"$LOG" 2>&1
rc=$?
ms=$(($(now_ms) - t0))
stop_faulty
expect_status $rc 1 "bulkhead-vmm (bad-config-size)"
expect_in "$BLOG" 'fault: GET_CONFIG of 60 bytes answered with 56'
expect_in "$LOG" 'error: disk1: the backend gave no device configuration: Protocol error'
expect_not_in "$LOG" "^$READY_MARKER\$"
[ "$ms" -lt 20000 ] || fail "bad-config-size: bulkhead-vmm took $ms ms to refuse"
[ -z "$(blk_pid "$good")" ] || fail "bad-config-size: disk0's bulkhead-blk outlived the VMM"
note "bad-config-size: bulkhead-vmm refused to start in $ms ms, naming disk1"

note "whole test: $((($(now_ms) - t_start) / 1000)) s"
pass "hostile disk backends: the VMM survives each, only the hostile disk fails, the other works"
