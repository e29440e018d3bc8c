#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Time isolation (issue 9): per-VM host CPUs, CPU budget and weight, applied by `bulkhead up`.
#  - a dedicated-CPU layout on the 2-CPU test host: hog (2 vCPUs, cpu-max: 50%, host-cpus:
#    "0") and neighbour (1 vCPU, no limit, host-cpus: "1") each spin on every vCPU; once
#    both have spun for 20 s, each VM's CPU over a 10 s window is read from its cgroup's
#    cpu.stat usage_usec: hog takes at most 0.55 CPU although its two spinning vCPUs
#    would fill its CPU, and neighbour keeps at least 0.8 of its own;
#  - each bulkhead-vmm was born in its own cgroup (/proc/PID/cgroup), hog's holds
#    cpu.max "50000 100000", and hog was throttled (cpu.stat nr_throttled);
#  - each bulkhead-vmm and every one of its threads may run on its host CPU only
#    (Cpus_allowed_list in /proc/PID/status and /proc/PID/task/*/status);
#  - `ctl --json status hog` shows cpu_max 0.5 and no "not applied" note, cpu_s counts;
#  - bulkhead down removes the cgroups.
# Margins: cpu.max is enforced per 100 ms period, so over 10 s hog can exceed 0.5 CPU only
# by what the kernel lets a period overrun (a few ms at most): 0.55 leaves 10 %. neighbour
# shares its CPU with the test host's own work (the supervisor, this script and its
# forks, interrupts): 0.8 leaves 20 %. (Why dedicated: with hog free to run on both CPUs
# the scheduler at times leaves one of hog's vCPU threads on neighbour's CPU, where the
# two cgroups split it by weight until hog is throttled; two such runs measured neighbour
# at 0.75 and 0.95 of a CPU, hog at 0.46 both times: a share, but not one a test can pin
# down.)
# timeout: 600
# testhost-smp: 2
set -u
. "$(dirname "$0")/lib-vmm.sh"
BH=$BUILD/bulkhead
require_file "$GUEST_INITRD" "$BH"
CG=/sys/fs/cgroup
[ -f $CG/cgroup.controllers ] ||
    fail "no cgroup v2 at $CG (the test host mounts it in tools/testhost-init): budgets cannot be measured"
grep -qw cpu $CG/cgroup.controllers || fail "cgroup v2 at $CG has no cpu controller: $(cat $CG/cgroup.controllers)"
[ "$(nproc)" -ge 2 ] || fail "the test host has $(nproc) CPU; this test needs 2 (# testhost-smp: 2)"

system_setup sv-cpu

# A guest that spins on N vCPUs (a busy shell loop each) and stays up.
spin_cmdline() {
    printf '%s -- %s' "$APPEND_BASE" "$(guest_script "for i in \$(seq $1); do (while :; do :; done) & done
echo spinning-on-$1
while :; do sleep 1000; done")"
}
{
    echo "version: 1"
    echo "vms:"
    printf '  hog:\n    kernel: %s\n    initrd: %s\n    cmdline: %s\n    memory: 192M\n' \
        "$GUEST_KERNEL" "$GUEST_INITRD" "'$(spin_cmdline 2)'"
    printf '    vcpus: 2\n    cpu-max: 50%%\n    host-cpus: "0"\n'
    printf '  neighbour:\n    kernel: %s\n    initrd: %s\n    cmdline: %s\n    memory: 192M\n' \
        "$GUEST_KERNEL" "$GUEST_INITRD" "'$(spin_cmdline 1)'"
    printf '    vcpus: 1\n    host-cpus: "1"\n'
} >"$dir/sys.yaml"

"$BH" up "$dir/sys.yaml" --run-dir "$RUN" --log-dir "$LOGD" --detach --pid-file "$dir/pid" \
    >"$dir/up.out" 2>&1 || { cat "$dir/up.out" "$LOGD/supervisor.log" >&2; fail "bulkhead up failed"; }
ctl() { "$BH" ctl --socket "$RUN/control.sock" "$@"; }
wait_console hog 'spinning-on-2' 300
wait_console neighbour 'spinning-on-1' 300
note "both guests spin on every vCPU"
pid_of() { ctl --json status "$1" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p'; }
hog=$(pid_of hog) nb=$(pid_of neighbour)
[ -n "$hog" ] && [ -d "/proc/$hog" ] && [ -n "$nb" ] && [ -d "/proc/$nb" ] || fail "no VMM processes (hog '$hog', neighbour '$nb')"

# ---- placement: each VMM in its own cgroup, hog's with its budget ---------------------------
cg_of() { sed -n 's/^0:://p' "/proc/$1/cgroup"; }
hog_cg=$CG$(cg_of "$hog") nb_cg=$CG$(cg_of "$nb")
case $hog_cg in */bulkhead-*/hog) ;; *) fail "hog's VMM is in cgroup '$hog_cg', not bulkhead-*/hog" ;; esac
case $nb_cg in */bulkhead-*/neighbour) ;; *) fail "neighbour's VMM is in cgroup '$nb_cg', not bulkhead-*/neighbour" ;; esac
[ "$(cat "$hog_cg/cpu.max")" = "50000 100000" ] || fail "hog's cpu.max is '$(cat "$hog_cg/cpu.max")', not '50000 100000'"
[ "$(cat "$nb_cg/cpu.max")" = "max 100000" ] || fail "neighbour's cpu.max is '$(cat "$nb_cg/cpu.max")', not 'max 100000'"
note "cgroups: $hog_cg (cpu.max $(cat "$hog_cg/cpu.max")), $nb_cg (cpu.max $(cat "$nb_cg/cpu.max"))"

# ---- affinity: each VMM and all its threads on its host CPU only ------------------------------
check_cpus() { # NAME PID CPUS MIN-THREADS
    local st cpus threads=0
    for st in "/proc/$2/status" /proc/"$2"/task/*/status; do
        cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$st")
        [ "$cpus" = "$3" ] || fail "$1: $st says Cpus_allowed_list: '$cpus', not $3"
        threads=$((threads + 1))
    done
    # The process's own status, then one per thread: the main thread and each vCPU's.
    [ "$threads" -gt "$4" ] || fail "$1's VMM has only $((threads - 1)) threads: not the running VMM?"
    note "affinity: $1's VMM and its $((threads - 1)) threads on CPU $3 only"
}
check_cpus hog "$hog" 0 3
check_cpus neighbour "$nb" 1 2

# ---- the budget, measured ------------------------------------------------------------------
usage() { sed -n 's/^usage_usec //p' "$1/cpu.stat"; }

throttled() { sed -n 's/^nr_throttled //p' "$1/cpu.stat"; }
note "steady state: 20 s of spinning before measuring"
sleep 20
grep '^cpu[0-9]' /proc/stat >"$dir/stat0"
t0=${EPOCHREALTIME/./} h0=$(usage "$hog_cg") n0=$(usage "$nb_cg") th0=$(throttled "$hog_cg")
sleep 10
t1=${EPOCHREALTIME/./} h1=$(usage "$hog_cg") n1=$(usage "$nb_cg") th1=$(throttled "$hog_cg")
grep '^cpu[0-9]' /proc/stat >"$dir/stat1"
# Where the time of each host CPU went over the window (for the numbers' context).
paste "$dir/stat0" "$dir/stat1" | while read -r -a v; do
    n=$(((${#v[@]}) / 2)) tot=0 line=""
    # user ... steal: guest and guest_nice are counted in user and nice already.
    for ((k = 1; k < n && k < 9; k++)); do tot=$((tot + v[n + k] - v[k])); done
    names=(- user nice system idle iowait irq softirq steal guest guest_nice)
    for ((k = 1; k < n && k < 11; k++)); do
        d=$((v[n + k] - v[k]))
        [ "$d" -gt 0 ] && line="$line ${names[k]} $((d * 100 / (tot > 0 ? tot : 1)))%"
    done
    note "${v[0]}:$line"
done
span=$((t1 - t0))
# Thousandths of a CPU over the window.
hog_m=$(((h1 - h0) * 1000 / span)) nb_m=$(((n1 - n0) * 1000 / span))
note "over $((span / 1000)) ms: hog $hog_m/1000 CPU (throttled $((th1 - th0)) times), neighbour $nb_m/1000 CPU"
[ "$hog_m" -le 550 ] || fail "hog took $hog_m/1000 of a CPU, over its budget of 500 (+10 %)"
[ "$((th1 - th0))" -gt 0 ] || fail "hog was never throttled: its budget did not bite"
[ "$nb_m" -ge 800 ] || fail "neighbour got only $nb_m/1000 of its CPU (want at least 800)"
# /proc agrees on hog's VMM process alone (its threads; a lower bound of the cgroup's count).
read -r -a f <"/proc/$hog/stat"
note "hog's VMM in /proc: $(((f[13] + f[14]) / $(getconf CLK_TCK))) s of CPU since it started"

# ---- status ----------------------------------------------------------------------------------
ctl --json status hog >"$dir/hog.json" || fail "ctl --json status hog failed"
grep -q '"cpu_max":0.5' "$dir/hog.json" || { cat "$dir/hog.json" >&2; fail "ctl --json status hog: no cpu_max 0.5"; }
! grep -q 'cpu_limits_not_applied' "$dir/hog.json" || { cat "$dir/hog.json" >&2; fail "status says hog's budget is not applied"; }
cpu_s=$(sed -n 's/.*"cpu_s":\([0-9.]*\).*/\1/p' "$dir/hog.json")
[ "${cpu_s%%.*}" -ge 5 ] || fail "status: hog's cpu_s is $cpu_s after more than 30 s at half a CPU"
ctl --json status neighbour | grep -q '"host_cpus":"1"' || fail "ctl --json status neighbour: no host_cpus \"1\""
! ctl --json status neighbour | grep -q '"cpu_max"' || fail "ctl --json status neighbour: a cpu_max without cpu-max"
ctl status >"$dir/status.out" || fail "ctl status failed"
grep -qE '^    cpu: .*cpu-max 0.5 CPU' "$dir/status.out" || { cat "$dir/status.out" >&2; fail "ctl status shows no cpu-max line for hog"; }
note "status: hog cpu_max 0.5, cpu_s $cpu_s; neighbour host_cpus 1"

# ---- down: the cgroups go with the system --------------------------------------------------------
sys_cg=$(dirname "$hog_cg") sup=$(cat "$dir/pid")
"$BH" down --socket "$RUN/control.sock" --timeout 120 >"$dir/down.out" 2>&1 || { cat "$dir/down.out" >&2; fail "bulkhead down failed"; }
for _ in $(seq 50); do kill -0 "$sup" 2>/dev/null || break; sleep 0.2; done
[ ! -e "$sys_cg" ] || fail "$sys_cg is still there after down: $(ls "$sys_cg")"
pass "time isolation: hog $hog_m/1000 CPU under a budget of 500, neighbour $nb_m/1000 of its CPU; affinity, cgroups, status"
