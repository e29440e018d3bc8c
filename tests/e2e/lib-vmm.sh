# shellcheck shell=bash
# SPDX-License-Identifier: BSD-2-Clause
# Helpers for the bulkhead-vmm end-to-end tests (sourced; they run inside the test host,
# with the repository as the current directory). Builds on lib.sh.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_vmm # a missing binary fails every VMM test

E2E_LOGS=$TEST_LOG_DIR
# Quiet console (every console byte is an exit), reboot on panic so a panic ends the VM.
APPEND_BASE=$GUEST_APPEND

# vmm_boot NAME TIMEOUT GUEST_COMMAND [VMM_ARGS...]
# Boots the small guest (or $GUEST_INITRD as set by the caller) with GUEST_COMMAND, run by
# its init after the ready marker, and returns bulkhead-vmm's exit status; the console and
# the VMM's log are in $LOG. A guest that never prints the ready marker fails the test at
# once, with the end of $LOG shown (guest_run: no retries for the VMM under test).
vmm_boot() {
    local name=$1 timeout=$2 cmd=$3
    shift 3
    LOG=$E2E_LOGS/$name.log
    guest_run "$timeout" "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
        --cmdline "$APPEND_BASE -- $cmd" "$@"
}

# count_in FILE PATTERN: number of lines containing the fixed string PATTERN
count_in() {
    grep -c -F -- "$2" "$1" || true
}

# wait_log PATTERN SECONDS: wait until $LOG (the running VM's console and log) has a line
# matching the extended regular expression PATTERN; 1 if none came within SECONDS.
wait_log() {
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        grep -q -E "$1" "$LOG" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# blk_pid IMG: the pid of a bulkhead-blk serving IMG, if any. (/proc is scanned by hand:
# the test host has no pgrep.)
blk_pid() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        case $cmd in */bulkhead-blk\ *--image\ "$1"\ *) echo "${p#/proc/}"; return ;; esac
    done
}

# system_setup TAG: the scratch space of a test of `bulkhead up` (BH must be set): $dir, a
# directory in /tmp (removed at exit; the 9p share of the repository cannot hold sockets),
# $RUN for the run directory, and $LOGD, the test's logs/system/, emptied first (a rerun
# must not read the last run's consoles) and kept afterwards, visible while the test runs.
# At exit the system goes down and a supervisor still there is killed.
system_setup() {
    dir=$(mktemp -d "/tmp/$1.XXXXXX") || fail "mktemp"
    RUN=$dir/run
    LOGD=$E2E_LOGS/system
    rm -rf "$LOGD"
    trap system_cleanup EXIT
}

system_cleanup() {
    "$BH" down --socket "$RUN/control.sock" --timeout 60 >/dev/null 2>&1
    [ -s "$dir/pid" ] && kill -KILL "$(cat "$dir/pid")" 2>/dev/null
    rm -rf "$dir"
}

# system_logs: what a failed `bulkhead up` test shows of $LOGD (its --log-dir). CI keeps
# only the end of a run's output, so the lines that explain a failure come last: every
# component's tail first, then the warnings and errors of each log, then the supervisor's
# own tail.
system_logs() {
    local f
    for f in "$LOGD"/*.log; do
        case $f in */supervisor.log) continue ;; esac
        echo "--- tail of ${f##*/}" >&2
        tail -6 "$f" >&2
    done
    for f in "$LOGD"/*.log; do
        case $f in *.console.log) continue ;; esac
        echo "--- warnings and errors in ${f##*/}" >&2
        grep -a -E ': (warn|error): |FAIL|panic|Oops' "$f" | tail -12 >&2
    done
    echo "--- tail of supervisor.log" >&2
    tail -20 "$LOGD/supervisor.log" >&2
}

# wait_console VM PATTERN SECONDS: wait until the console log of VM (in $LOGD) has a
# line matching the extended regular expression PATTERN; fails the test, with
# system_logs, if none came within SECONDS.
wait_console() {
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        grep -aqE "$2" "$LOGD/$1.console.log" 2>/dev/null && return 0
        sleep 0.2
    done
    system_logs
    fail "$1: no '$2' within $3 s"
}

# thread_policies PID: one line "PROGRAM/THREAD POLICY" for every thread of PID and of its
# child processes (its backends); POLICY is the scheduling class, field 41 of
# /proc/TID/stat (0 SCHED_OTHER, 3 SCHED_BATCH). (/proc by hand: no pgrep here.)
thread_policies() {
    local f p t line fields comm pcomm
    local -a pids=("$1")
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        read -ra fields <<<"${line##*) }"
        [ "${fields[1]}" = "$1" ] && { p=${f#/proc/}; pids+=("${p%/stat}"); }
    done
    for p in "${pids[@]}"; do
        read -r pcomm 2>/dev/null <"/proc/$p/comm" || continue
        for t in /proc/"$p"/task/[0-9]*; do
            read -r line 2>/dev/null <"$t/stat" || continue
            comm=${line#*(}
            comm=${comm%) *}
            read -ra fields <<<"${line##*) }"
            echo "$pcomm/$comm ${fields[38]}"
        done
    done
}
