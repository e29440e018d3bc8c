#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# A disk backend killed 50 times under a writing guest loses no flushed write.
# One VM, `writer`, its disk from a bulkhead-blk backend `store` (isolated mode, restart
# policy always with a short back-off and no limit), started with `bulkhead up --detach`:
#  - the guest writes 4 KiB records to /dev/vda one after the other, record i at block i,
#    each 64 lines "SEQ:LINE:PATTERN" (the sequence number in every line), with
#    dd oflag=direct conv=fsync; after each dd that succeeded it prints "flushed i";
#  - the test kills store with SIGKILL 50 times (every other time after a SIGSTOP of
#    0.3 s, so that the guest's write or flush is surely in flight), each time waiting
#    until the supervisor runs a new store and the guest flushed a new record;
#  - then the VM is stopped (power button) and the system brought down, and the image is
#    read on the host: every record up to the last "flushed N" on the guest's console must
#    be there, byte for byte; the one after it may or may not be;
#  - the guest never saw an I/O error (in isolated mode bulkhead-vmm sends the requests in
#    flight to the new backend), and the VM itself was never restarted.
# timeout: 900
# testhost-smp: 1
set -u
. "$(dirname "$0")/lib-vmm.sh"
BH=$BUILD/bulkhead
require_file "$GUEST_TOOLS_INITRD" "$BH" "$BUILD/bulkhead-blk"

KILLS=${TEST_KILLS:-50}
system_setup blk-kill-e2e
IMG=$dir/disk.img
CONS=$LOGD/writer.console.log

# A record: 64 lines of 64 bytes, "%010d:%02d:" then PAT (49 bytes) and a newline.
PAT=bulkhead-53-flushed-record-pattern-0123456789abcd
RECORDS=65536 # the image's 256 MiB in 4 KiB blocks; the guest stops there
writer_script="L=\$(seq -s ' ' 0 63)
i=0
echo writer-start
while [ \$i -lt $RECORDS ]; do
printf \"\$(printf %010d \$i):%02d:$PAT\\n\" \$L >/tmp/r
if dd if=/tmp/r of=/dev/vda bs=4096 seek=\$i count=1 oflag=direct conv=notrunc,fsync 2>/tmp/e; then
echo \"flushed \$i\"; i=\$((i+1))
else
echo \"dd-failed \$i: \$(cat /tmp/e)\"; sleep 1
fi
done
echo writer-done
while :; do sleep 1000; done"
cmdline="$APPEND_BASE -- $(guest_script "$writer_script")"
cat >"$dir/sys.yaml" <<EOF
version: 1
vms:
  writer:
    kernel: $GUEST_KERNEL
    initrd: $GUEST_TOOLS_INITRD
    cmdline: '$cmdline'
    memory: 256M
    disks: [{backend: store}]
    restart: never
backends:
  store:
    type: blk
    image: $IMG
    create: 256M
    restart: {policy: always, backoff: 100ms, backoff-max: 1s, limit: 0}
EOF
"$BH" check "$dir/sys.yaml" >"$dir/check.out" 2>&1 || { cat "$dir/check.out" >&2; fail "bulkhead check refused the description"; }

ctl() { "$BH" ctl --socket "$RUN/control.sock" "$@"; }
# status NAME: set ST_STATE, ST_PID, ST_RESTARTS from `ctl --json status NAME` (the test
# host forks slowly: bash's own matching, no sed per field).
status() {
    ST=$(ctl --json status "$1" 2>&1)
    ST_STATE='' ST_PID=0 ST_RESTARTS=''
    [[ $ST =~ \"state\":\"([a-z]+)\" ]] && ST_STATE=${BASH_REMATCH[1]}
    [[ $ST =~ \"pid\":([0-9]+) ]] && ST_PID=${BASH_REMATCH[1]}
    [[ $ST =~ \"restarts\":([0-9]+) ]] && ST_RESTARTS=${BASH_REMATCH[1]}
}
# scan: set FLUSHED (the highest record the guest reported flushed, -1 if none) and
# ERRORS (its lines that tell of an I/O error, or of a writer or kernel that ended).
ERR_RE='I/O error|blk_update_request|dd-failed|Buffer I/O|writer-done|BULKHEAD-GUEST-EXIT=|Kernel panic'
scan() {
    local out
    out=$(awk -v re="$ERR_RE" '/^flushed [0-9]/ { n = $2 + 0 } $0 ~ re { e++ }
        END { print (n == "" ? -1 : n), e + 0 }' "$CONS" 2>/dev/null)
    FLUSHED=${out% *} ERRORS=${out#* }
    [ -n "$FLUSHED" ] || FLUSHED=-1 ERRORS=0
}
show_logs() {
    local f
    echo "--- writer console (lines about errors, then the last 10):" >&2
    grep -anE "$ERR_RE" "$CONS" | head -n 6 >&2; tail -n 10 "$CONS" >&2
    for f in writer store supervisor; do
        echo "--- $f.log (last 25 lines):" >&2; tail -n 25 "$LOGD/$f.log" >&2
    done
    ctl status >&2 2>&1
}
# wait_flushed N SECONDS: until the guest reported a record above N flushed; 1 if it did
# not within SECONDS, 2 at once if it reported an error.
wait_flushed() {
    local end=$((SECONDS + $2))
    while :; do
        scan
        [ "$ERRORS" = 0 ] || return 2
        [ "$FLUSHED" -gt "$1" ] && return 0
        [ $SECONDS -lt $end ] || return 1
        sleep 0.2
    done
}

# ---- up ---------------------------------------------------------------------------------
"$BH" up "$dir/sys.yaml" --run-dir "$RUN" --log-dir "$LOGD" --detach --pid-file "$dir/pid" \
    >"$dir/up.out" 2>&1 || { cat "$dir/up.out" "$LOGD/supervisor.log" >&2; fail "bulkhead up failed"; }
wait_flushed 4 300 || { show_logs; fail "the guest did not start writing within 300 s"; }
status writer
vm_pid=$ST_PID
[ "$vm_pid" != 0 ] || { show_logs; fail "no pid for writer ($ST)"; }
note "writer is writing (record $FLUSHED flushed); killing store $KILLS times"

# ---- the kills ----------------------------------------------------------------------------
# A failure here is recorded in $problem; the image is checked all the same, so that the
# report says whether flushed writes were lost too.
problem=
t0=$(now_ms)
status store
restarts0=$ST_RESTARTS
for ((k = 1; k <= KILLS; k++)); do
    status store
    pid=$ST_PID
    [ "$ST_STATE" = running ] && [ "$pid" != 0 ] || { problem="kill $k: store is not running ($ST)"; break; }
    if ((k % 2)); then
        kill -STOP "$pid" && sleep 0.3
    fi
    scan
    at_kill=$FLUSHED
    kill -KILL "$pid" || { problem="kill $k: cannot kill store (pid $pid)"; break; }
    # The supervisor runs a new store...
    end=$((SECONDS + 30))
    while status store; do
        [ "$ST_STATE" = running ] && [ "$ST_RESTARTS" = $((restarts0 + k)) ] &&
            [ "$ST_PID" != "$pid" ] && [ "$ST_PID" != 0 ] && break
        [ $SECONDS -lt $end ] || break
        sleep 0.1
    done
    [ "$ST_STATE" = running ] && [ "$ST_RESTARTS" = $((restarts0 + k)) ] ||
        { problem="kill $k: store (pid $pid) was not running again within 30 s ($ST)"; break; }
    # ... and the guest goes on writing through it: the old store is gone (reaped), so
    # a record flushed from now on went through the new one.
    scan
    base=$FLUSHED
    wait_flushed "$base" 60
    case $? in
    1) problem="kill $k: the guest flushed nothing for 60 s after the restart (last record $base, $at_kill at the kill)"; break ;;
    2) problem="kill $k: the guest saw an I/O error (last record flushed $FLUSHED, $at_kill at the kill)"; break ;;
    esac
    ((k % 10 == 0)) && note "kill $k: store pid $pid killed, restarted; record $FLUSHED flushed"
done
t1=$(now_ms)
if [ -z "$problem" ]; then
    wait_flushed "$((FLUSHED + 5))" 60
    case $? in
    1) problem="the guest flushed nothing more after the last kill" ;;
    2) problem="the guest saw an I/O error after the last kill" ;;
    esac
fi
if [ -z "$problem" ]; then
    status writer
    [ "$ST_PID" = "$vm_pid" ] && [ "$ST_RESTARTS" = 0 ] || problem="writer was restarted during the kills ($ST)"
fi
if [ -n "$problem" ]; then
    echo "FAIL (the image is checked next): $problem" >&2
    show_logs
else
    note "$KILLS kills in $(((t1 - t0) / 1000)) s; writer's pid unchanged"
fi

# ---- stop, down ---------------------------------------------------------------------------
scan
errors_before_stop=$ERRORS
ctl stop writer >/dev/null || { show_logs; fail "ctl stop writer failed${problem:+; and before: $problem}"; }
end=$((SECONDS + 60))
until ctl list | grep -qE '^writer .* (stopped|exited)'; do
    [ $SECONDS -lt $end ] || { show_logs; fail "writer did not stop${problem:+; and before: $problem}"; }
    sleep 0.2
done
"$BH" down --socket "$RUN/control.sock" --timeout 120 >"$dir/down.out" 2>&1 ||
    { cat "$dir/down.out" >&2; fail "bulkhead down failed${problem:+; and before: $problem}"; }
# The power button ends the writer (BULKHEAD-GUEST-EXIT=...): only I/O errors count now.
if [ -z "$problem" ] && grep -aqE 'I/O error|blk_update_request|dd-failed|Buffer I/O' "$CONS"; then
    grep -anE 'I/O error|blk_update_request|dd-failed|Buffer I/O' "$CONS" | head -n 5 >&2
    problem="the guest saw an I/O error while it was being stopped (errors before: $errors_before_stop)"
fi

# What bulkhead-vmm says about the restarts.
backs=$(grep -ac 'disk0: backend back (restart' "$LOGD/writer.log")
resent=$(grep -a 'request(s) in flight sent to the new backend' "$LOGD/writer.log" |
    sed -n 's/.*disk0: \([0-9]*\) request.*/\1/p' | awk '{ s += $1; if ($1 > 0) n++ } END { print s + 0, n + 0 }')
note "bulkhead-vmm: $backs reconnections; requests resent: ${resent% *} in total, by ${resent#* } of the restarts"
[ -n "$problem" ] || [ "$backs" -ge "$KILLS" ] || problem="bulkhead-vmm reconnected $backs times, not $KILLS"

# ---- the image ------------------------------------------------------------------------------
scan
last=$FLUSHED
[ "$last" -ge 0 ] || fail "no record was flushed${problem:+; and before: $problem}"
lines=$(seq -s ' ' 0 63)
expected=$dir/expected
# record N: print it (bash builtins only: the test host forks slowly).
record() {
    local n
    printf -v n %010d "$1"
    # shellcheck disable=SC2086 # the 64 line numbers, one argument each
    printf "$n:%02d:$PAT\\n" $lines
}
for ((i = 0; i <= last; i++)); do record $i; done >"$expected"
[ "$(stat -c %s "$expected")" = $(((last + 1) * 4096)) ] || fail "the expected records came out the wrong size"
if ! out=$(cmp -n $(((last + 1) * 4096)) "$expected" "$IMG" 2>&1); then
    off=$(sed -n 's/.* byte \([0-9]*\).*/\1/p' <<<"$out")
    bad=$(((off - 1) / 4096))
    nbad=0
    for ((i = bad; i <= last; i++)); do
        cmp -s <(dd if="$expected" bs=4096 skip=$i count=1 2>/dev/null) \
            <(dd if="$IMG" bs=4096 skip=$i count=1 2>/dev/null) || nbad=$((nbad + 1))
    done
    echo "$out" >&2
    echo "--- record $bad on the image (the first bad one), first lines:" >&2
    dd if="$IMG" bs=4096 skip=$bad count=1 2>/dev/null | od -A d -c | head -n 8 >&2
    fail "$nbad of the $((last + 1)) flushed records are missing or damaged, the first record $bad (last flushed: $last)${problem:+; and before: $problem}"
fi
# The record after the last one reported: there or not (or, written when the VM stopped,
# partly there); anything else is not told apart.
if cmp -s <(record $((last + 1))) \
    <(dd if="$IMG" bs=4096 skip=$((last + 1)) count=1 2>/dev/null); then
    after="present"
else
    after="not present"
fi
note "image: records 0-$last all intact ($((last + 1)) records checked); record $((last + 1)): $after"
[ -z "$problem" ] || fail "$problem (the $((last + 1)) records flushed are all intact on the image)"
pass "store killed $KILLS times under the writer: $((last + 1)) flushed records checked, none lost, no I/O error"
