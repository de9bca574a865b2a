#!/bin/sh
# flash.sh — write a Witness firmware image to a device (or a file) and verify it.
#
#   flash.sh [--yes] [--check-only] IMAGE TARGET
#
# TARGET is a whole block device (/dev/sdX, /dev/mmcblkN, /dev/loopN) or a regular file.
# Refuses: a mounted device (or one with a mounted partition), the disk the running system
# lives on, anything that is neither a block device nor a file, a device smaller than the
# image. Asks before writing unless --yes. Uses bmaptool when it and IMAGE.bmap exist, else dd.
# Verifies by reading the written bytes back and comparing SHA-256. --check-only runs every
# check and stops before writing. Standalone POSIX sh: technicians may not have Rust.
set -eu

die() { echo "flash.sh: $*" >&2; exit 1; }
say() { echo "flash.sh: $*" >&2; }

yes=0
check_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --yes) yes=1; shift ;;
        --check-only) check_only=1; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[ $# -eq 2 ] || die "usage: flash.sh [--yes] [--check-only] IMAGE TARGET"
image=$1
target=$2

[ -f "$image" ] || die "image $image does not exist or is not a file"
[ -r "$image" ] || die "image $image is not readable"
image_size=$(wc -c < "$image" | tr -d ' ')
[ "$image_size" -gt 0 ] || die "image $image is empty"

# The whole disk a device belongs to (a partition's parent), by sysfs.
disk_of() {
    name=$(basename "$(readlink -f "$1")")
    if [ -e "/sys/class/block/$name/partition" ]; then
        basename "$(readlink -f "/sys/class/block/$name/..")"
    else
        echo "$name"
    fi
}

if [ -b "$target" ]; then
    kind=device
    dev=$(readlink -f "$target")
    disk=$(disk_of "$dev")
    # Mounted: the device itself or any of its partitions (also as swap).
    for part in "$disk" $(ls "/sys/class/block/$disk" 2>/dev/null | grep "^$disk" || true); do
        if grep -q "^/dev/$part " /proc/mounts 2>/dev/null || grep -q "^/dev/$part " /proc/swaps 2>/dev/null; then
            die "$target is in use: /dev/$part is mounted; unmount it first"
        fi
    done
    # The disk the running system lives on (root, and where /boot and /var are).
    for mnt in / /boot /var /usr; do
        src=$(findmnt -no SOURCE "$mnt" 2>/dev/null || true)
        case "$src" in /dev/*) ;; *) continue ;; esac
        [ -b "$src" ] || continue
        if [ "$(disk_of "$src")" = "$disk" ]; then
            die "$target holds the running system ($mnt is on $src); refusing to overwrite it"
        fi
    done
    size=$(blockdev --getsize64 "$dev" 2>/dev/null || cat "/sys/class/block/$disk/size" 2>/dev/null | awk '{print $1*512}')
    [ -n "$size" ] || die "cannot read the size of $target"
    [ "$size" -ge "$image_size" ] || die "$target has $size bytes, the image needs $image_size"
elif [ -e "$target" ] && [ ! -f "$target" ]; then
    die "$target is neither a block device nor a regular file; refusing"
else
    kind=file
    parent=$(dirname "$target")
    [ -d "$parent" ] || die "the folder of $target does not exist"
    [ "$(readlink -f "$target")" != "$(readlink -f "$image")" ] || die "image and target are the same file"
fi

say "image:  $image ($image_size bytes)"
say "target: $target ($kind)"
if [ "$check_only" -eq 1 ]; then
    say "checks passed; nothing written (--check-only)"
    exit 0
fi

if [ "$yes" -ne 1 ]; then
    [ -t 0 ] || die "not asking without a terminal: add --yes to write $target"
    printf 'Write %s to %s? Everything on it is lost. Type yes: ' "$image" "$target" >&2
    read -r answer || answer=
    [ "$answer" = yes ] || die "not confirmed; nothing written"
fi

if command -v bmaptool >/dev/null 2>&1 && [ -f "$image.bmap" ] && [ "$kind" = device ]; then
    say "writing with bmaptool (mapped blocks only)"
    bmaptool copy "$image" "$target" || die "bmaptool failed writing $target"
else
    say "writing with dd"
    if [ "$kind" = file ]; then
        dd if="$image" of="$target" bs=4M conv=fsync status=progress || die "writing $target failed"
    else
        dd if="$image" of="$target" bs=4M conv=fsync,notrunc oflag=direct status=progress 2>&1 >&2 \
            || dd if="$image" of="$target" bs=4M conv=fsync,notrunc status=progress || die "writing $target failed"
    fi
fi
sync

say "verifying (reading back $image_size bytes)"
if [ "$kind" = device ]; then
    # Drop cached pages so the check reads what the device holds.
    blockdev --flushbufs "$target" 2>/dev/null || true
fi
want=$(sha256sum < "$image" | cut -d' ' -f1)
got=$(head -c "$image_size" "$target" | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] || die "verification FAILED: $target holds sha256 $got, the image is $want"
say "verified: sha256 $want"
