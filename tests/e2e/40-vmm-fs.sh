#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# virtio-fs: a host directory shared with the guest through Debian's virtiofsd (software
# nobody here wrote) behind bulkhead-vmm's --fs, in both memory modes (isolated works
# because virtiofsd runs without DAX: every byte goes through descriptors). The guest
# mounts it with Linux's virtiofs driver and
#  - checks a tree the host wrote (sha256 of every file),
#  - copies that tree within the share and checks the copy,
#  - writes a file of its own;
# afterwards the host checks the guest's copy and file byte for byte. In isolated mode the
# live virtiofsd's /proc/PID/maps must show the bounce region and not guest RAM.
# timeout: 420
set -u
. "$(dirname "$0")/lib-vmm.sh"
require_file "$GUEST_TOOLS_INITRD"
VIRTIOFSD=/usr/lib/qemu/virtiofsd
[ -x "$VIRTIOFSD" ] || fail "$VIRTIOFSD is not installed (package qemu-system-common)"

dir=$(mktemp -d /tmp/fs-e2e.XXXXXX) || fail "mktemp"
fsd_pid=
cleanup() {
    [ -n "$fsd_pid" ] && kill -KILL "$fsd_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# A tree of files of assorted sizes (some empty, some over a megabyte), random contents.
make_tree() {
    local root=$1 i
    mkdir -p "$root/tree/a/b" "$root/tree/c"
    for i in 0 1 2 3 4 5 6 7; do
        head -c $((i * i * 37000)) /dev/urandom >"$root/tree/a/f$i"
        head -c $((i * 1000 + 1)) /dev/urandom >"$root/tree/a/b/g$i"
    done
    head -c 3000000 /dev/urandom >"$root/tree/c/big"
    : >"$root/tree/c/empty"
    (cd "$root" && find tree -type f -print0 | sort -z | xargs -0 sha256sum) >"$root/SUMS"
}

script=$(cat <<'GUEST'
set -e
mount -t virtiofs share /mnt
echo mounted
cd /mnt
sha256sum -c SUMS >/tmp/sums.log && echo host-tree-ok
cp -a tree copy
sed 's# tree/# copy/#' SUMS | sha256sum -c >/tmp/copy.log && echo copy-ok
yes guest-wrote-this | head -c 2000000 >from-guest
sync
echo fs-idle
sleep 3
cd /
umount /mnt && echo unmounted
GUEST
)

# watch_maps LOG OUT: once the guest prints fs-idle, copy virtiofsd's mappings to OUT.
watch_maps() {
    local log=$1 out=$2 p maps=
    for _ in $(seq 3000); do
        grep -q '^fs-idle' "$log" 2>/dev/null && break
        sleep 0.1
    done
    # virtiofsd forks into a sandbox: look at every process of that program.
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$VIRTIOFSD" ] || continue
        maps+=$(cat "$p/maps" 2>/dev/null)$'\n'
    done
    printf '%s\nMAPS-DONE\n' "$maps" >"$out"
}

# run_mode MODE
run_mode() {
    local mode=$1 share=$dir/share-$1 log=$E2E_LOGS/fs-$1.log watch=
    mkdir -p "$share"
    make_tree "$share"
    "$VIRTIOFSD" --socket-path="$dir/fs-$mode.sock" -o source="$share" -o cache=none \
        >"$E2E_LOGS/virtiofsd-$mode.log" 2>&1 &
    fsd_pid=$!
    for _ in $(seq 100); do [ -S "$dir/fs-$mode.sock" ] && break; sleep 0.05; done
    [ -S "$dir/fs-$mode.sock" ] || { show_log "$E2E_LOGS/virtiofsd-$mode.log"; fail "virtiofsd did not listen"; }
    rm -f "$log"
    if [ "$mode" = isolated ]; then
        watch_maps "$log" "$dir/maps" &
        watch=$!
    fi
    LOG=$log
    guest_run 300 "$log" "$VMM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_TOOLS_INITRD" \
        --mem 512M --cpus 2 --log-level info --fs "socket=$dir/fs-$mode.sock,tag=share,mode=$mode" \
        --cmdline "$APPEND_BASE -- $(guest_script "$script")"
    expect_status $? 0 "bulkhead-vmm (fs, $mode)"
    expect_guest_exit "$log" 0
    for m in mounted host-tree-ok copy-ok unmounted; do
        expect_in "$log" "^$m\$"
    done
    expect_in "$log" "fs0: vhost-user backend .*$mode memory"
    expect_not_in "$log" 'error|needs a reset'
    kill -TERM "$fsd_pid" 2>/dev/null; wait "$fsd_pid" 2>/dev/null; fsd_pid=
    # The host sees what the guest wrote.
    (cd "$share" && sed 's# tree/# copy/#' SUMS | sha256sum -c --quiet) ||
        fail "the guest's copy of the tree differs on the host ($mode)"
    cmp <(yes guest-wrote-this | head -c 2000000) "$share/from-guest" ||
        fail "the guest's file differs on the host ($mode)"
    if [ -n "$watch" ]; then
        wait "$watch"
        grep -q MAPS-DONE "$dir/maps" || fail "virtiofsd's mappings were not captured"
        cp "$dir/maps" "$E2E_LOGS/virtiofsd-isolated.maps"
        grep -q 'bulkhead-guest-ram' "$dir/maps" && fail "virtiofsd maps guest RAM in isolated mode"
        grep -q 'bulkhead-bounce' "$dir/maps" || fail "virtiofsd does not map the bounce region"
    fi
    note "virtio-fs, $mode: host tree read, copied, guest file written, seen on the host: ok"
}

run_mode isolated
run_mode shared
pass "virtio-fs with virtiofsd in both modes: files cross both ways intact"
