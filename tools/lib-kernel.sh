# SPDX-License-Identifier: BSD-2-Clause
# Helpers shared by tools/mk-testhost and tools/mk-guest (source this file).
# They fetch a Debian kernel package without installing it, pull the ELF
# vmlinux out of its bzImage, and pack busybox-based initramfs trees. Only
# bash, coreutils, dpkg/apt, kmod and the (de)compressors are used: a fresh
# Debian machine may have no Python.

# die MESSAGE: print "NAME: MESSAGE" on stderr and exit 1.
die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# note MESSAGE: progress line on stderr (building images takes a while; the
# caller should see why).
note() {
    echo "${0##*/}: $*" >&2
}

# kernel_package META: print the exact versioned package the metapackage META
# (e.g. linux-image-amd64) currently depends on, e.g. linux-image-6.1.0-56-amd64.
# Debian replaces the ABI version with each point release, so it is resolved
# at build time instead of being written down anywhere.
kernel_package() {
    local meta=$1 pkg
    pkg=$(apt-cache depends "$meta" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
    if [ -z "$pkg" ]; then
        # The package lists may never have been fetched on a fresh machine.
        apt-get update -qq >&2 || true
        pkg=$(apt-cache depends "$meta" 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
    fi
    [ -n "$pkg" ] || die "cannot resolve the kernel package behind $meta (apt-cache depends $meta)"
    echo "$pkg"
}

# fetch_kernel PKG DEBDIR ROOTDIR: download exactly PKG (never a wildcard: that
# would fetch every version, over 1.5 GB) into DEBDIR and unpack it into
# ROOTDIR with dpkg-deb -x. Nothing is installed. Prints the kernel release
# (the directory name under ROOTDIR/lib/modules).
fetch_kernel() {
    local pkg=$1 debdir=$2 root=$3 deb kver
    mkdir -p "$debdir"
    deb=$(ls "$debdir/${pkg}_"*.deb 2>/dev/null | head -n 1 || true)
    if [ -z "$deb" ]; then
        note "downloading $pkg"
        # As root, apt cannot hand the download to its unprivileged _apt
        # user in a directory _apt cannot write, and says so; it is harmless.
        local get=(apt-get download -q -o APT::Sandbox::User=root "$pkg")
        (cd "$debdir" && "${get[@]}" >&2) ||
            { apt-get update -qq >&2 && (cd "$debdir" && "${get[@]}" >&2); } ||
            die "apt-get download $pkg failed"
        deb=$(ls "$debdir/${pkg}_"*.deb | head -n 1)
    fi
    if [ ! -d "$root/lib/modules" ]; then
        rm -rf "$root.tmp"
        mkdir -p "$root.tmp"
        dpkg-deb -x "$deb" "$root.tmp" || die "dpkg-deb -x $deb failed"
        rm -rf "$root"
        mv "$root.tmp" "$root"
    fi
    kver=$(ls "$root/lib/modules" | head -n 1)
    [ -n "$kver" ] || die "no lib/modules in $deb"
    echo "$kver"
}

# le32 FILE OFFSET: the little-endian 32-bit value at byte OFFSET of FILE.
le32() {
    od -An -t u4 -j "$2" -N 4 --endian=little "$1" | tr -d ' '
}

# extract_vmlinux BZIMAGE OUT: write the ELF kernel inside BZIMAGE to OUT.
# QEMU boots an ELF vmlinux through its PVH entry point, which skips the
# in-guest decompression that is slow under TCG (2.6 s for the test host).
# The boot protocol header says where the compressed payload is: setup_sects
# at 0x1f1, payload_offset/payload_length at 0x248/0x24c, relative to the
# protected-mode code that starts after the (setup_sects + 1) 512-byte sectors.
extract_vmlinux() {
    local in=$1 out=$2 sects off len magic
    sects=$(od -An -t u1 -j $((0x1f1)) -N 1 "$in" | tr -d ' ')
    [ "$sects" -eq 0 ] && sects=4
    off=$(le32 "$in" $((0x248)))
    len=$(le32 "$in" $((0x24c)))
    off=$(((sects + 1) * 512 + off))
    magic=$(od -An -t x1 -j "$off" -N 6 "$in" | tr -d ' ')
    local cat=(dd if="$in" bs=64K skip="$off" count="$len" iflag=skip_bytes,count_bytes status=none)
    case $magic in
    fd377a585a00) "${cat[@]}" | xz -dc --single-stream >"$out.tmp" ;;
    02214c18*) "${cat[@]}" | lz4 -dc >"$out.tmp" 2>/dev/null || true ;;
    1f8b*) "${cat[@]}" | gzip -dc >"$out.tmp" 2>/dev/null || true ;;
    28b52ffd*) "${cat[@]}" | zstd -dc >"$out.tmp" ;;
    *) die "$in: unknown payload compression (magic $magic)" ;;
    esac
    # lz4's legacy frame has no end marker, so the payload's trailing size
    # word makes it complain: judge by the result, which must be an ELF file.
    [ "$(od -An -t x1 -N 4 "$out.tmp" | tr -d ' ')" = 7f454c46 ] ||
        die "$in: the payload did not decompress to an ELF image"
    mv "$out.tmp" "$out"
}

# module_closure MODDIR NAME...: print the paths (relative to MODDIR) of the
# named modules and of every module they depend on, per modules.dep. Names
# that are built into the kernel (modules.builtin) print nothing; names that
# exist nowhere are an error.
module_closure() {
    local moddir=$1 name file line
    shift
    for name in "$@"; do
        # modules.dep spells module files with '-' or '_' as the source did.
        line=$(grep -E "/${name//[-_]/[-_]}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n 1)
        if [ -z "$line" ]; then
            grep -q -E "/${name//[-_]/[-_]}\.ko$" "$moddir/modules.builtin" ||
                die "module $name is neither a module nor built in"
            continue
        fi
        for file in ${line/:/}; do
            echo "$file"
        done
    done | sort -u
}

# strip_module_signature KO: remove the signature Debian appends to a kernel
# module, leaving the plain ELF object. Debian's kernels check that signature
# at every module load (CONFIG_MODULE_SIG, not enforced): an RSA verification
# over a SHA-256 of the module, slow under emulation (docs/testing.md has the
# measured gain). An unsigned module still loads; the kernel only marks itself
# tainted (E) and says so once at notice level, which `quiet` does not show.
# The trailer, read from the end of the file backwards
# (include/linux/module_signature.h in the kernel sources):
#   "~Module signature appended~\n"  28 bytes
#   struct module_signature           12 bytes: algo, hash, id_type,
#                                     signer_len, key_id_len, 3 pad bytes,
#                                     sig_len (32-bit big-endian)
#   signer, key id, signature         signer_len + key_id_len + sig_len bytes
# A module without the trailer is left as it is.
strip_module_signature() {
    local ko=$1 size magic hdr keep
    size=$(stat -c %s "$ko")
    [ "$size" -gt 40 ] || return 0
    # Compare as hex: command substitution would drop the trailing newline.
    magic=$(tail -c 28 "$ko" | od -An -v -t x1 | tr -d ' \n')
    [ "$magic" = "$MODULE_SIG_MAGIC_HEX" ] || return 0
    read -r -a hdr <<<"$(od -An -v -t u1 -j $((size - 40)) -N 12 "$ko")"
    keep=$((size - 40 - hdr[3] - hdr[4] -
        ((hdr[8] << 24) | (hdr[9] << 16) | (hdr[10] << 8) | hdr[11])))
    [ "$keep" -gt 0 ] || die "$ko: its signature trailer claims more bytes than the file has"
    truncate -s "$keep" "$ko"
    [ "$(od -An -t x1 -N 4 "$ko" | tr -d ' ')" = 7f454c46 ] ||
        die "$ko: not an ELF object after removing its signature"
}
MODULE_SIG_MAGIC_HEX=$(printf '~Module signature appended~\n' | od -An -v -t x1 | tr -d ' \n')

# copy_modules SRCROOT KVER DSTROOT NAME...: copy the dependency closure of
# the named modules from SRCROOT/lib/modules/KVER into DSTROOT, without their
# signatures (strip_module_signature), and index them with depmod, so that
# both busybox modprobe (modules.dep) and kmod's modprobe (the .bin indexes)
# find them.
copy_modules() {
    local src=$1 kver=$2 dst=$3 f
    shift 3
    local moddir=$src/lib/modules/$kver
    [ -f "$moddir/modules.dep" ] || depmod -b "$src" "$kver" || die "depmod $kver failed"
    mkdir -p "$dst/lib/modules/$kver"
    for f in $(module_closure "$moddir" "$@"); do
        mkdir -p "$dst/lib/modules/$kver/${f%/*}"
        cp "$moddir/$f" "$dst/lib/modules/$kver/$f"
        strip_module_signature "$dst/lib/modules/$kver/$f"
    done
    cp "$moddir/modules.order" "$moddir/modules.builtin" "$dst/lib/modules/$kver/"
    [ -f "$moddir/modules.builtin.modinfo" ] && cp "$moddir/modules.builtin.modinfo" "$dst/lib/modules/$kver/"
    depmod -b "$dst" "$kver" || die "depmod in $dst failed"
}

# install_busybox ROOT: static busybox in ROOT/bin with a symlink per applet,
# made here rather than by `busybox --install` at boot (every file the guest
# creates costs time under nested emulation).
install_busybox() {
    local root=$1 app bb
    bb=$(command -v busybox) || die "busybox not found (package busybox-static)"
    file -L "$bb" | grep -q 'statically linked' || die "$bb is not static (install busybox-static)"
    mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
    cp "$bb" "$root/bin/busybox"
    for app in $("$bb" --list); do
        [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"
    done
}

# pack_cpio ROOT OUT [gzip]: write ROOT as a newc cpio archive, optionally
# gzip-compressed, atomically (an interrupted build leaves no half file).
pack_cpio() {
    local root=$1 out=$2 comp=${3:-}
    if [ "$comp" = gzip ]; then
        (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -6n) >"$out.tmp"
    else
        (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out.tmp"
    fi
    mv "$out.tmp" "$out"
}

# recipe_hash KVER FILE...: a fingerprint of what makes an image (the kernel
# release whose modules it carries, the build scripts, the files it packs),
# to tell when the image must be rebuilt. By content, not modification time:
# a checkout or a restored build cache can leave old images newer than a
# changed recipe.
recipe_hash() {
    { echo "$1" && shift && cat -- "$@"; } | sha256sum | cut -d" " -f1
}

# image_stale IMAGE HASH: true if IMAGE is missing or was built by another
# recipe (its IMAGE.recipe, written by image_built, holds a different hash;
# images from before these stamps have none, so they are rebuilt once).
image_stale() {
    [ ! -s "$1" ] || [ "$(cat "$1.recipe" 2>/dev/null)" != "$2" ]
}

# image_built IMAGE HASH: record that IMAGE was built by the recipe HASH.
image_built() {
    echo "$2" >"$1.recipe"
}
