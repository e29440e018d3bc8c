#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# How bulkhead-vmm stops: SIGTERM (and SIGINT when the console is not on a terminal)
# presses the ACPI power button and the guest shuts down cleanly with status 0; a second
# signal stops it at once (128+N); so does --shutdown-timeout when the guest ignores the
# button. And none of that depends on stdout: with the console written to a pipe nobody
# reads, filled by the guest, SIGTERM still ends the VMM within seconds.
# timeout: 420
set -u
. "$(dirname "$0")/lib-vmm.sh"

# start_vmm NAME GUEST_COMMAND [VMM_ARGS...]: start the VMM in the background with its
# console and log in $LOG (unless the caller redirects stdout itself: STDOUT=path), and
# wait for the guest's ready marker. Sets PID.
start_vmm() {
    local name=$1 cmd=$2
    shift 2
    LOG=$E2E_LOGS/$name.log
    ERR=$E2E_LOGS/$name.err
    local out=${STDOUT:-$LOG}
    "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --log-level info \
        --cmdline "$APPEND_BASE -- $cmd" "$@" </dev/null >"$out" 2>"$ERR" &
    PID=$!
}

# wait_for FILE PATTERN SECONDS: wait until FILE has a line matching PATTERN (fixed
# string); fail with the logs if it does not come, or if the VMM ended first.
wait_for() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        grep -q -F -- "$2" "$1" 2>/dev/null && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    show_log "$1"
    [ -f "$ERR" ] && show_log "$ERR"
    fail "no '$2' in $1 within $3 s"
}

# wait_exit SECONDS: wait for the VMM to end within SECONDS; sets RC and ELAPSED_MS.
# A VMM still running then is a bulkhead hang: killed, and the test fails with its log.
wait_exit() {
    local t0 i
    t0=$(now_ms)
    for ((i = 0; i < $1 * 10; i++)); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID"
        wait "$PID"
        show_log "$ERR"
        fail "bulkhead-vmm did not stop within $1 s"
    fi
    wait "$PID"
    RC=$?
    ELAPSED_MS=$(($(now_ms) - t0))
}

merged() { cat "$LOG" "$ERR" 2>/dev/null; }

# 1. SIGTERM: the guest sees its power button, shuts down, and the VMM exits 0.
start_vmm sigterm 'sleep 600'
wait_for "$LOG" "$READY_MARKER" 60
kill -TERM "$PID"
wait_exit 30
expect_status "$RC" 0 "SIGTERM (graceful)"
expect_in "$LOG" 'bulkhead-guest: power button: shutting down'
expect_in "$LOG" 'reboot: Power down'
expect_in "$ERR" "SIGTERM: pressing the guest's power button"
note "SIGTERM: guest powered off, status 0, $ELAPSED_MS ms"

# 2. SIGINT with stdin not a terminal is the same polite request.
start_vmm sigint 'sleep 600'
wait_for "$LOG" "$READY_MARKER" 60
kill -INT "$PID"
wait_exit 30
expect_status "$RC" 0 "SIGINT (graceful)"
expect_in "$LOG" 'bulkhead-guest: power button: shutting down'

# 3. A guest that ignores the button (acpid killed): a second SIGTERM stops it at once.
start_vmm second-signal 'killall acpid; echo acpid-gone; sleep 600'
wait_for "$LOG" acpid-gone 60
kill -TERM "$PID"
sleep 2
kill -0 "$PID" 2>/dev/null || fail "the VMM stopped although the guest ignored the button"
kill -TERM "$PID"
wait_exit 10
expect_status "$RC" 143 "second SIGTERM"
expect_in "$ERR" 'stopped by signal 15 \(SIGTERM\) during the guest.s shutdown'
expect_not_in "$LOG" 'bulkhead-guest: power button'

# 4. The same guest with --shutdown-timeout 3: stopped hard 3 s after SIGTERM.
start_vmm timeout 'killall acpid; echo acpid-gone; sleep 600' --shutdown-timeout 3
wait_for "$LOG" acpid-gone 60
kill -TERM "$PID"
wait_exit 20
expect_status "$RC" 143 "SIGTERM with --shutdown-timeout 3"
expect_in "$ERR" 'did not power off within 3 s of SIGTERM'
[ "$ELAPSED_MS" -ge 2500 ] || fail "stopped after $ELAPSED_MS ms, before the 3 s timeout"

# 5. --shutdown-timeout 0: SIGTERM stops at once, as before graceful stops existed.
start_vmm no-grace 'sleep 600' --shutdown-timeout 0
wait_for "$LOG" "$READY_MARKER" 60
kill -TERM "$PID"
wait_exit 10
expect_status "$RC" 143 "SIGTERM with --shutdown-timeout 0"

# 6. stdout is a pipe nobody reads and the guest floods the console: the VMM's buffer
#    fills, the UART makes the guest's driver wait, and SIGTERM still shuts the guest
#    down within seconds (the guest's own shutdown gets through because the button
#    handler does not wait for the console). The FIFO's reader holds it open and never
#    reads.
# (In /tmp: the 9p share of the repository cannot hold a FIFO.)
fifo=/tmp/bulkhead-blocked.fifo
rm -f "$fifo"
mkfifo "$fifo"
sleep 600 <"$fifo" &
reader=$!
STDOUT=$fifo start_vmm blocked-sigterm 'yes 0123456789abcdef0123456789abcdef0123456789'
wait_for "$ERR" 'bytes of guest output wait for the host end' 90
kill -TERM "$PID"
wait_exit 30
expect_status "$RC" 0 "SIGTERM with a blocked stdout"
note "blocked stdout: SIGTERM -> status 0 in $ELAPSED_MS ms"

# 7. The same with two signals: the hard stop does not wait for stdout either.
STDOUT=$fifo start_vmm blocked-hard 'yes 0123456789abcdef0123456789abcdef0123456789'
wait_for "$ERR" 'bytes of guest output wait for the host end' 90
kill -TERM "$PID"
# The second signal only once the first was taken: two SIGTERMs pending at once are one
# (standard signals do not queue), and a VMM in SCHED_BATCH may not run in between.
wait_for "$ERR" "SIGTERM: pressing the guest's power button" 30
kill -TERM "$PID"
wait_exit 10
expect_status "$RC" 143 "two SIGTERMs with a blocked stdout"
kill "$reader" 2>/dev/null
wait "$reader" 2>/dev/null

pass "graceful stop, second signal, timeout, blocked stdout"
