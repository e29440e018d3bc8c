#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The console multiplexer driven as a person would (docs/console.md): `bulkhead up` in the
# foreground in a tmux pane, keys typed with tmux send-keys, the screen read with
# capture-pane. Two VMs, a and b, each with a shell on its serial console:
#  - the one line with the keys at start; every guest line behind its VM's prefix;
#  - typing goes to a first; Ctrl-A 2 gives it to b: `echo hello-from-b` runs in b, its
#    lines are on the screen as `b | ...` and in b's console log, not in a's; Ctrl-A 1,
#    Ctrl-A b (by name) and Ctrl-A Ctrl-A (back to the one before) switch too;
#  - Ctrl-A ? lists the VMs, with the one that gets the input;
#  - colours: each name in its own colour, the multiplexer's lines in bold (capture-pane
#    -e), and no escape sequence at all from a second system started with NO_COLOR=1;
#  - the logs: mode 0600, the guest's bytes (CR LF line ends) with what was typed;
#  - Ctrl-A x stops the system gracefully: the supervisor exits 0, nothing is left running.
# timeout: 300
set -u
. "$(dirname "$0")/lib-vmm.sh"
BH=$BUILD/bulkhead
require_file "$BH" "$GUEST_VMLINUX" "$GUEST_INITRD" "$BUILD/bulkhead-console"
command -v tmux >/dev/null || fail "tmux is missing (tools/deps test installs it)"
export TERM=${TERM:-xterm}

dir=$(mktemp -d /tmp/mux-e2e.XXXXXX) || fail "mktemp"
TM=(tmux -S "$dir/tmux.sock" -f "$dir/tmux.conf")
cleanup() {
    local r
    for r in run ncrun; do
        [ -S "$dir/$r/control.sock" ] &&
            "$BH" down --socket "$dir/$r/control.sock" --timeout 30 >/dev/null 2>&1
    done
    "${TM[@]}" kill-server 2>/dev/null
    cp "$dir"/logs/*.log "$dir"/nclogs/*.log "$E2E_LOGS"/ 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# A shell on the console: guest/init runs one when nothing follows `--`.
cat >"$dir/sys.yaml" <<EOF
vms:
  a:
    kernel: $GUEST_VMLINUX
    initrd: $GUEST_INITRD
    cmdline: $APPEND_BASE
  b:
    kernel: $GUEST_VMLINUX
    initrd: $GUEST_INITRD
    cmdline: $APPEND_BASE
EOF
# The same multiplexer with NO_COLOR=1: one VM that prints a line and powers off.
cat >"$dir/nc.yaml" <<EOF
vms:
  c:
    kernel: $GUEST_VMLINUX
    initrd: $GUEST_INITRD
    cmdline: $APPEND_BASE -- echo plain-line-from-c
    restart: never
EOF
# A history long enough for the whole run; a pane that stays when bulkhead has exited.
printf 'set -g history-limit 20000\nset -g remain-on-exit on\n' >"$dir/tmux.conf"

# screen SESSION [capture-pane options]: the pane's whole history, wrapped lines joined.
screen() {
    local s=$1
    shift
    "${TM[@]}" capture-pane -p -J -S - -t "$s" "$@"
}
# show_screen: the end of the main pane, to explain a failure.
show_screen() {
    screen main >"$E2E_LOGS/screen.txt" 2>&1
    screen nc >"$E2E_LOGS/screen-nc.txt" 2>&1
    echo "--- the end of the screen (all of it: $E2E_LOGS/screen.txt):" >&2
    tail -n 30 "$E2E_LOGS/screen.txt" >&2
}
# wait_screen SESSION ERE SECONDS [COUNT]: until COUNT (1) lines of the pane match ERE.
wait_screen() {
    local end=$((SECONDS + $3)) n
    while :; do
        n=$(screen "$1" | grep -cE -- "$2")
        [ "$n" -ge "${4:-1}" ] && return 0
        [ $SECONDS -lt $end ] || break
        sleep 0.3
    done
    show_screen
    fail "$1: no line /$2/ on the screen (${4:-1} wanted, $n seen) within $3 s"
}
# wait_log VM ERE SECONDS: until VM's console log has a line matching ERE (CR removed).
wait_log_line() {
    local end=$((SECONDS + $3))
    while :; do
        tr -d '\r' <"$dir/logs/$1.console.log" 2>/dev/null | grep -qE -- "$2" && return 0
        [ $SECONDS -lt $end ] || break
        sleep 0.3
    done
    show_screen
    echo "--- $1.console.log:" >&2
    tail -n 20 "$dir/logs/$1.console.log" >&2
    fail "$1: no line /$2/ in its console log within $3 s"
}
not_in_log() { # VM ERE
    ! tr -d '\r' <"$dir/logs/$1.console.log" | grep -qE -- "$2" ||
        fail "$1's console log has /$2/, which was typed into the other VM"
}
keys() { "${TM[@]}" send-keys -t main "$@"; }
# switched_to VM COUNT: the COUNT-th "input goes to VM" line appeared.
switched_to() { wait_screen main "^--- input goes to $1 \(Ctrl-A \? for help\) ---\$" 10 "$2"; }
# type_in VM WORD: run `echo WORD` in the VM that has the input, see it in VM's log and
# on the screen behind VM's prefix.
type_in() {
    keys "echo $2" Enter
    wait_log_line "$1" "^$2\$" 20
    wait_screen main "^$1 \| $2\$" 10
    wait_screen main "^$1 \| guest:/# echo $2\$" 10
}

# ---- up, in the foreground, in a terminal ------------------------------------------------
"${TM[@]}" new-session -d -s main -x 160 -y 50 \
    "env -u NO_COLOR $BH up $dir/sys.yaml --run-dir $dir/run --log-dir $dir/logs --log-level warn; echo \$? >$dir/status" ||
    fail "tmux new-session failed"
"${TM[@]}" new-session -d -s nc -x 160 -y 50 \
    "NO_COLOR=1 $BH up $dir/nc.yaml --run-dir $dir/ncrun --log-dir $dir/nclogs --log-level warn; echo \$? >$dir/ncstatus" ||
    fail "tmux new-session (NO_COLOR) failed"
wait_screen main '^bulkhead: Consoles: Ctrl-A then 1\.\.9 .*Ctrl-A x stops them all and quits\.$' 20
wait_log_line a '^guest:/# ' 240
wait_log_line b '^guest:/# ' 240
wait_screen main '^a \| BULKHEAD-GUEST-READY$' 10
wait_screen main '^b \| BULKHEAD-GUEST-READY$' 10
note "up in a tmux pane: the keys line, both VMs booted to a shell, their lines behind 'a | ' and 'b | '"

# ---- switching the input -------------------------------------------------------------------
type_in a hello-from-a
not_in_log b hello-from-a
keys C-a 2
switched_to b 1
type_in b hello-from-b
not_in_log a hello-from-b
keys C-a 1
switched_to a 1
type_in a back-in-a
keys C-a b
switched_to b 2
type_in b by-name-b
keys C-a C-a
switched_to a 2
type_in a toggled-to-a
not_in_log b 'back-in-a|toggled-to-a'
not_in_log a 'by-name-b'
note "input: a first; Ctrl-A 2, Ctrl-A 1, Ctrl-A b, Ctrl-A Ctrl-A each moved it, and what was typed ran in that VM only"

# ---- the list --------------------------------------------------------------------------------
keys C-a '?'
wait_screen main '^--- consoles ---$' 10
wait_screen main '^ +1 +a +<- gets your input' 10
wait_screen main '^ +2 +b +running$' 10
wait_screen main '^  x +stop every VM' 10
note "Ctrl-A ?: the VMs, which one gets the input, the keys"

# ---- colours -----------------------------------------------------------------------------------
E=$'\e'
SGR="${E}\[[0-9;]*m" # tmux sets attributes back at the start of the line after a bold one
screen main -e >"$dir/colour.txt"
# tmux draws the cells it holds: the name's colour (36 for the first VM, 32 for the second),
# then back to the default before " | ".
grep -qE "^($SGR)*${E}\[([0-9]+;)*36ma${E}\[[0-9;]*m \| hello-from-a\$" "$dir/colour.txt" ||
    { show_screen; grep -F 'hello-from-a' "$dir/colour.txt" | cat -v >&2; fail "a's prefix is not in its colour (36)"; }
grep -qE "^($SGR)*${E}\[([0-9]+;)*32mb${E}\[[0-9;]*m \| hello-from-b\$" "$dir/colour.txt" ||
    { show_screen; grep -F 'hello-from-b' "$dir/colour.txt" | cat -v >&2; fail "b's prefix is not in its colour (32)"; }
grep -qE "^($SGR)*${E}\[([0-9]+;)*1m--- input goes to b " "$dir/colour.txt" ||
    { grep -F 'input goes to' "$dir/colour.txt" | cat -v >&2; fail "the multiplexer's own lines are not bold"; }
wait_screen nc '^c \| plain-line-from-c$' 240
wait_screen nc '^--- c: (exited|stopped) ---$' 60
screen nc -e >"$dir/nocolour.txt"
! grep -q "$E" "$dir/nocolour.txt" ||
    { grep "$E" "$dir/nocolour.txt" | cat -v | head >&2; fail "NO_COLOR=1: escape sequences on the screen"; }
"$BH" down --socket "$dir/ncrun/control.sock" --timeout 30 >/dev/null || fail "bulkhead down (NO_COLOR system) failed"
for _ in $(seq 50); do [ -s "$dir/ncstatus" ] && break; sleep 0.2; done
[ "$(cat "$dir/ncstatus" 2>/dev/null)" = 0 ] || fail "the NO_COLOR supervisor exited with '$(cat "$dir/ncstatus" 2>/dev/null)', not 0"
note "colours: a cyan, b green, the multiplexer's lines bold; with NO_COLOR=1 not one escape sequence"

# ---- the logs -----------------------------------------------------------------------------------
for v in a b; do
    [ "$(stat -c %a "$dir/logs/$v.console.log")" = 600 ] || fail "$v.console.log has mode $(stat -c %a "$dir/logs/$v.console.log"), not 0600"
done
grep -aq $'^hello-from-b\r$' "$dir/logs/b.console.log" || fail "b's log does not hold the guest's bytes (CR LF)"
grep -aqE $'^guest:/# .*echo hello-from-b\r$' "$dir/logs/b.console.log" || fail "b's log lacks the echo of what was typed"
# busybox's shell asks the terminal where the cursor is (ESC [ 6 n) before each prompt:
# the log keeps it, the screen does not (else tmux would answer it as if typed into b).
grep -aq $'\e\\[6n' "$dir/logs/b.console.log" || fail "b's log lacks the guest's escape sequences"
note "logs: 0600, the guest's own bytes (CR LF, escape sequences), each VM's typing in its own log only"

# ---- bulkhead ctl console ---------------------------------------------------------------------
# Another client attaches to a's console through the control socket: what it types runs in
# a, and a's output reaches it too (it leaves at the end of its input, here by timeout).
printf 'echo via-ctl-$((6 * 7))\n' | timeout 15 "$BH" ctl --socket "$dir/run/control.sock" console a \
    >"$dir/ctlcon.out" 2>"$dir/ctlcon.err"
grep -aq 'via-ctl-42' "$dir/ctlcon.out" || { cat "$dir/ctlcon.out" "$dir/ctlcon.err" >&2; fail "ctl console a: the command's output did not come back"; }
grep -aq $'^via-ctl-42\r$' "$dir/logs/a.console.log" || fail "ctl console a: the command did not run in a"
note "bulkhead ctl console a: typed into a, its output came back"

# ---- Ctrl-A x ------------------------------------------------------------------------------------
keys C-a x
for _ in $(seq 300); do [ -s "$dir/status" ] && break; sleep 0.2; done
[ -s "$dir/status" ] || { show_screen; fail "the supervisor did not exit within 60 s of Ctrl-A x"; }
[ "$(cat "$dir/status")" = 0 ] || { show_screen; fail "the supervisor exited with $(cat "$dir/status") after Ctrl-A x, not 0"; }
for v in a b; do
    grep -aq 'power button: shutting down' "$dir/logs/$v.console.log" || fail "$v was not stopped through its power button"
done
wait_screen main '^--- a: stopped ---$' 5
wait_screen main '^--- b: stopped ---$' 5
for p in /proc/[0-9]*; do
    case $(cat "$p/comm" 2>/dev/null) in tmux*) continue ;; esac
    case $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) in
    *"$dir/run"* | *"$dir/ncrun"*) fail "still running after Ctrl-A x: $(tr '\0' ' ' <"$p/cmdline")" ;;
    esac
done
screen main >"$E2E_LOGS/screen.txt"
pass "console multiplexer in tmux: keys line, prefixes, Ctrl-A 2/1/name/Ctrl-A, Ctrl-A ?, colours and NO_COLOR, logs, ctl console, Ctrl-A x"
