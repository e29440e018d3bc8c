#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# virtio-console and virtio-rng behind their own backends (bulkhead-console,
# bulkhead-rng), started by bulkhead-vmm, with Linux's virtio_console and virtio_rng
# drivers in the guest:
#  - hvc0 on a unix socket: the host types commands into a shell the guest runs on
#    /dev/hvc0 and reads their output;
#  - a named second port ("data": the guest finds its /dev/vportNpM by the name in sysfs;
#    there is no udev for the /dev/virtio-ports/ link) on another unix socket carries a
#    1 MiB random stream host -> guest and a 2 MiB one guest -> host, sha256-checked;
#  - /dev/hwrng delivers 64 KiB that are not all zeros, twice, and the two differ; in
#    isolated mode (console and rng) and in shared mode (rng);
#  - --sched: every thread of the VMM (vCPUs, device threads) and of the backends it
#    started is in SCHED_BATCH by default, and in SCHED_OTHER with --sched normal.
# timeout: 360
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD" "$BUILD/bulkhead-console" "$BUILD/bulkhead-rng"

dir=$(mktemp -d /tmp/con-e2e.XXXXXX) || fail "mktemp"
bg=()
cleanup() {
    local p
    for p in "${bg[@]}"; do { kill -KILL "$p"; wait "$p"; } 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT

# The guest: a shell on hvc0 for the host; the data port's two streams; the rng.
script=$(cat <<'GUEST'
setsid sh -c 'exec sh </dev/hvc0 >/dev/hvc0 2>&1' &
p=
for i in $(seq 100); do
  for f in /sys/class/virtio-ports/*/name; do
    [ "$(cat $f 2>/dev/null)" = data ] && p=/dev/$(basename $(dirname $f))
  done
  [ -n "$p" ] && [ -e "$p" ] && break; sleep 0.1
done
test -e "$p" && echo port-present
exec 3<>$p
dd bs=1 count=3 <&3 >/dev/null 2>&1
echo "port-in $(head -c 1048576 <&3 | sha256sum | cut -d' ' -f1)"
head -c 2097152 /dev/urandom >/tmp/out.bin
echo "port-out $(sha256sum </tmp/out.bin | cut -d' ' -f1)"
sleep 1 # the serial line drains first: the backend's log shares the test's log file
cat /tmp/out.bin >&3
exec 3>&-
cat /sys/class/misc/hw_random/rng_current
a=$(head -c 65536 /dev/hwrng | sha256sum | cut -d' ' -f1)
b=$(head -c 65536 /dev/hwrng | sha256sum | cut -d' ' -f1)
n=$(head -c 65536 /dev/hwrng | tr -d '\000' | wc -c)
[ "$a" != "$b" ] && [ "$n" -gt 60000 ] && echo rng-ok
for i in $(seq 200); do [ -e /tmp/hvc-ok ] && break; sleep 0.1; done
test -e /tmp/hvc-ok && echo hvc-seen
GUEST
)

# Host side of the data port: once the socket is there, send "go" and 1 MiB on one
# connection and keep it open while the guest answers with 2 MiB, saved to got.bin.
head -c 1048576 /dev/urandom >"$dir/in.bin"
(
    for _ in $(seq 600); do [ -S "$dir/data.sock" ] && break; sleep 0.1; done
    { printf 'go\n'; cat "$dir/in.bin"; sleep 120; } |
        socat - UNIX-CONNECT:"$dir/data.sock" >"$dir/got.bin" &
    s=$!
    for _ in $(seq 1200); do
        [ "$(stat -c %s "$dir/got.bin" 2>/dev/null)" = 2097152 ] && break
        sleep 0.1
    done
    kill "$s"
) 2>/dev/null &
data_pid=$!
# Host side of hvc0: commands in, their output kept.
(
    for _ in $(seq 600); do [ -S "$dir/hvc.sock" ] && break; sleep 0.1; done
    sleep 2
    { printf 'echo hvc-$((6*7))\n'; printf 'touch /tmp/hvc-ok\n'; sleep 30; } |
        timeout 60 socat - UNIX-CONNECT:"$dir/hvc.sock" >"$dir/hvc.out"
) 2>/dev/null &
bg+=($!)

# vmm_pid DIR: the pid of the bulkhead-vmm whose command line names DIR (the program
# itself, not the timeout that runs it).
vmm_pid() {
    local p
    for p in /proc/[0-9]*; do
        # -ef and grep on one file only: a fork per process would take seconds here.
        [ "$p/exe" -ef "$VMM" ] && grep -qF "$1" "$p/cmdline" 2>/dev/null &&
            { echo "${p#/proc/}"; return; }
    done
}
# sample_policies DIR FILE N: once the VMM and N backends run, their threads' classes.
sample_policies() {
    local pid
    for _ in $(seq 600); do
        pid=$(vmm_pid "$1")
        [ -n "$pid" ] && [ "$(thread_policies "$pid" | grep -c -e '^bulkhead-consol/' -e '^bulkhead-rng/')" -ge "$3" ] && break
        sleep 0.1
    done
    sleep 1 # the device threads start with their devices
    [ -n "$pid" ] && thread_policies "$pid" >"$2"
}
# check_policies FILE POLICY WHAT: every thread in FILE has POLICY, and there are vCPU,
# device and backend threads among them.
check_policies() {
    [ -s "$1" ] || fail "$3: no thread of the VMM was seen"
    grep -q '/vcpu0 ' "$1" && grep -q '/io-' "$1" && grep -q '^bulkhead-rng/' "$1" ||
        { cat "$1" >&2; fail "$3: the vCPU, device or backend threads are missing"; }
    if grep -v " $2\$" "$1" >&2; then fail "$3: the threads above are not in class $2"; fi
}

sample_policies "$dir" "$dir/policies" 2 &
bg+=($!)
LOG=$E2E_LOGS/console-rng.log
guest_run 300 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
    --mem 512M --cpus 2 --log-level info \
    --console "out=unix:$dir/hvc.sock,port=data=unix:$dir/data.sock" --rng getrandom \
    --cmdline "$APPEND_BASE -- $(guest_script "$script")"
expect_status $? 0 "bulkhead-vmm (console, rng)"
wait "$data_pid"
expect_guest_exit "$LOG" 0
expect_in "$LOG" '^port-present$'
expect_in "$LOG" "^port-in $(sha256sum <"$dir/in.bin" | cut -d' ' -f1)\$"
expect_in "$LOG" '^virtio_rng'
expect_in "$LOG" '^rng-ok$'
expect_in "$LOG" '^hvc-seen$'
expect_in "$LOG" 'console0: vhost-user backend .*isolated memory'
expect_in "$LOG" 'rng0: vhost-user backend .*isolated memory'
expect_not_in "$LOG" 'error|needs a reset'
grep -q 'hvc-42' "$dir/hvc.out" || { show_log "$dir/hvc.out"; fail "no answer from the shell on hvc0"; }
out_sum=$(sed -n 's/^port-out \([0-9a-f]*\)$/\1/p' "$LOG")
[ -n "$out_sum" ] || fail "the guest did not report its stream's checksum"
[ "$(sha256sum <"$dir/got.bin" | cut -d' ' -f1)" = "$out_sum" ] ||
    fail "the guest's 2 MiB on the data port arrived different ($(stat -c %s "$dir/got.bin") bytes)"
note "hvc0: a shell on a unix socket answers: ok; data port both ways: ok; rng (isolated): ok"
check_policies "$dir/policies" 3 "default --sched"
note "--sched default: $(wc -l <"$dir/policies") threads of the VMM and its backends, all SCHED_BATCH"

# The rng in shared mode (bulkhead-rng maps guest RAM), with --sched normal.
LOG=$E2E_LOGS/rng-shared.log
mkdir -p "$dir/normal"
sample_policies "$dir/normal" "$dir/policies-normal" 1 &
bg+=($!)
guest_run 200 "$LOG" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
    --mem 256M --log-level info --rng getrandom,mode=shared --sched normal \
    --control "$dir/normal/ctl.sock" \
    --cmdline "$APPEND_BASE -- $(guest_script 'n=$(head -c 65536 /dev/hwrng | tr -d "\000" | wc -c); [ $n -gt 60000 ] && echo rng-ok; sleep 8')"
expect_status $? 0 "bulkhead-vmm (rng, shared)"
expect_guest_exit "$LOG" 0
expect_in "$LOG" '^rng-ok$'
expect_in "$LOG" 'rng0: vhost-user backend .*shared memory'
expect_not_in "$LOG" 'error|needs a reset'
check_policies "$dir/policies-normal" 0 "--sched normal"
pass "virtio-console (hvc0 and a named port) and virtio-rng behind their own backends"
