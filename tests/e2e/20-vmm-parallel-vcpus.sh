#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# A 4-vCPU guest's vCPUs run at the same time, and their serial output arrives
# intact. The guest pins one busy loop to each CPU (busybox taskset) for a few
# seconds; each loop prints a numbered line about four times a second, naming
# the CPU it ran on. Checked here:
#   - every cpuN line of the guest's /proc/stat gained busy time (user, system
#     or steal: each vCPU ran, or waited for a host CPU, rather than idling);
#   - each loop ran on its own CPU and all four streams of lines came through
#     whole (exact text, numbered 1..N with N as the loop counted, none lost,
#     none doubled, nothing half-written or merged);
#   - the streams overlap in time (every stream's first line comes before
#     every stream's last line): the four loops ran concurrently.
# The test host has 2 CPUs, so two vCPUs can really run in parallel there.
# timeout: 300
# testhost-smp: 2
set -u
. "$(dirname "$0")/lib-vmm.sh"

SECONDS_BUSY=6
TEXT=abcdefghijklmnopqrstuvwxyz0123456789
# /tmp/w CPU END: busy loop until the guest's uptime reaches END (in 1/100 s),
# printing "P<cpu> <n> cpu<where it ran> TEXT" every 0.25 s and "P<cpu> done
# <n>" at the end. No forks: /proc/uptime and /proc/self/stat (field 39 is
# the CPU the shell last ran on) are read with the shell's own `read`.
script="cat >/tmp/w <<'W'
c=\$1 end=\$2 n=0 next=0
while read -r up _ </proc/uptime; up=\${up%.*}\${up#*.}; [ \$up -lt \$end ]; do
    j=0; while [ \$j -lt 50 ]; do j=\$((j + 1)); done
    [ \$up -ge \$next ] || continue
    next=\$((up + 25)) n=\$((n + 1))
    read -r st </proc/self/stat; set -- \$st
    echo \"P\$c \$n cpu\${39} $TEXT\"
done
echo \"P\$c done \$n\"
W
echo cpus=\$(nproc)
grep '^cpu[0-9]' /proc/stat | sed 's/^/STAT0 /'
read -r up _ </proc/uptime; t0=\${up%.*}\${up#*.}
echo START
for c in 0 1 2 3; do taskset -c \$c sh /tmp/w \$c \$((t0 + $SECONDS_BUSY * 100)) & done
wait
echo END
read -r up _ </proc/uptime; echo wall=\$((\${up%.*}\${up#*.} - t0))
grep '^cpu[0-9]' /proc/stat | sed 's/^/STAT1 /'"

vmm_boot parallel-vcpus 200 "$(guest_script "$script")" --cpus 4
expect_status $? 0 "bulkhead-vmm with 4 vCPUs"
expect_guest_exit "$LOG" 0
expect_in "$LOG" '^cpus=4$'

# 1. /proc/stat: "cpuN user nice system idle iowait irq softirq steal ..." (in
# 1/100 s) before and after. Four vCPUs share the test host's two emulated
# CPUs, on a machine that may be busy with other work, so each gets only part
# of the time. A busy vCPU's ticks count as user or system time, or as steal
# time while it waited for a host CPU: on a loaded machine steal can take
# every tick of one (measured: user +0, steal +2.04 s in 6 s, while its loop
# printed 16 lines). A vCPU that never ran, or sat idle, gains none of these.
# Demand at least 1/60 of the loops' time in user + system + steal; that the
# loops really ran on their CPUs is checked line by line in 2.
min_busy=$((SECONDS_BUSY * 100 / 60))
total=0
for c in 0 1 2 3; do
    read -r u0 s0 st0 <<<"$(awk -v c="cpu$c" '$1 == "STAT0" && $2 == c {print $3, $5, $10}' "$LOG")"
    read -r u1 s1 st1 <<<"$(awk -v c="cpu$c" '$1 == "STAT1" && $2 == c {print $3, $5, $10}' "$LOG")"
    [ -n "${u0:-}" ] && [ -n "${u1:-}" ] || fail "no /proc/stat line for cpu$c in $LOG"
    busy=$((u1 - u0 + s1 - s0 + st1 - st0))
    note "cpu$c: user +$((u1 - u0))/100 s, system +$((s1 - s0))/100 s, steal +$((st1 - st0))/100 s"
    [ "$busy" -ge "$min_busy" ] ||
        fail "cpu$c was busy for $busy/100 s in ${SECONDS_BUSY} s of busy loops (want >= $min_busy/100 s)"
    total=$((total + u1 - u0))
done
wall=$(sed -n 's/^wall=\([0-9]*\)$/\1/p' "$LOG")
note "user time of all vCPUs: $total/100 s in ${wall:-?}/100 s"

# 2. The serial streams: between START and END only whole lines of the loops
# (and, tolerated but shown, kernel messages).
out=$E2E_LOGS/parallel-vcpus.streams
sed -n '/^START$/,/^END$/p' "$LOG" | sed '1d;$d' >"$out"
bad=$(grep -v -n -E "^P[0-3] ([0-9]+ cpu[0-3] $TEXT|done [0-9]+)\$" "$out" | grep -v -E '^[0-9]+:\[ *[0-9]+\.[0-9]+\] ')
[ -z "$bad" ] || {
    show_log "$out" 60
    fail "broken or foreign lines among the loops' output: $(head -n 5 <<<"$bad")"
}
grep -E '^\[ *[0-9]+\.[0-9]+\] ' "$out" | sed 's/^/  kernel: /' >&2
for c in 0 1 2 3; do
    n=$(sed -n "s/^P$c done \\([0-9]*\\)\$/\\1/p" "$out")
    [ -n "$n" ] || fail "loop $c never reported its end ($out)"
    [ "$n" -ge 3 ] || fail "loop $c printed only $n lines in ${SECONDS_BUSY} s ($out)"
    # Exactly the lines 1..n, in order, each once, each from CPU c.
    got=$(grep -E "^P$c [0-9]+ cpu" "$out" | cut -d' ' -f2 | tr '\n' ' ')
    want=$(seq -s ' ' 1 "$n")
    [ "$got" = "$want " ] || fail "loop $c: lines numbered '$got', expected 1..$n ($out)"
    other=$(grep -E "^P$c [0-9]+ cpu" "$out" | grep -v -c " cpu$c ")
    [ "$other" = 0 ] || fail "loop $c, pinned to CPU $c, reported another CPU $other times ($out)"
    note "loop $c: $n lines, all from cpu$c"
done

# 3. Concurrency: the last stream to start started before the first stream
# to end ended.
last_first=0 first_last=999999
for c in 0 1 2 3; do
    f=$(grep -n -m 1 -E "^P$c 1 " "$out" | cut -d: -f1)
    l=$(grep -n -E "^P$c [0-9]+ cpu" "$out" | tail -n 1 | cut -d: -f1)
    [ "$f" -gt "$last_first" ] && last_first=$f
    [ "$l" -lt "$first_last" ] && first_last=$l
done
[ "$last_first" -lt "$first_last" ] ||
    fail "the loops did not overlap: one started at line $last_first, after another's last line $first_last ($out)"
pass "4 vCPUs ran user code, pinned loops overlapped, $(grep -c '^P' "$out") serial lines intact"
