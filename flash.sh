#!/bin/sh
# flash.sh — write a Witness firmware image to a device (or a file) and verify it.
#
#   flash.sh [--yes] [--check-only] IMAGE TARGET
#
# TARGET is a whole block device (/dev/sdX, /dev/mmcblkN, /dev/loopN) or a regular file.
# Refuses, naming the rule: the disk of /, /boot or the ESP through any stack (system); a
# device-mapper device (dm); a disk or partition with holders, recursively (holders); one
# mounted or swap, itself or through its stack (mounted, swap); an LVM PV, md member, LUKS
# volume or ZFS member, active or not (lvm-pv, md-member, luks, zfs); anything that is neither
# a block device nor a file, a device smaller than the image. Asks before writing unless
# --yes. Uses bmaptool when it and IMAGE.bmap exist, else dd. Verifies by reading the written
# bytes back and comparing SHA-256. --check-only runs every check and stops before writing.
# Standalone POSIX sh: technicians may not have Rust.
set -eu

die() { echo "flash.sh: $*" >&2; exit 1; }
say() { echo "flash.sh: $*" >&2; }

yes=0
check_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --yes) yes=1; shift ;;
        --check-only) check_only=1; shift ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# Block devices are compared by their kernel name (sda, nvme0n1p2, dm-3, md127), whatever
# path named them: /dev/disk/by-*, /dev/mapper/*, /dev/VG/LV all resolve to one name.
name_of() { basename "$(readlink -f "$1")"; }

# The whole disk a device belongs to (a partition's parent), by sysfs.
disk_of() {
    n=$(name_of "$1")
    if [ -e "/sys/class/block/$n/partition" ]; then
        basename "$(readlink -f "/sys/class/block/$n/..")"
    else
        echo "$n"
    fi
}

# The disk and its partitions.
parts_of() {
    echo "$1"
    for p in /sys/class/block/"$1"/"$1"*; do
        [ -e "$p/partition" ] && basename "$p"
    done
    return 0
}

# A device and everything stacked on it (dm, md, bcache…), recursively through holders/.
stack_of() {
    echo "$1"
    for h in /sys/class/block/"$1"/holders/*; do
        [ -e "$h" ] && stack_of "$(basename "$h")"
    done
    return 0
}

# The physical disks a device lives on, recursively through slaves/ (LVM, LUKS, md, multipath).
disks_under() {
    found=0
    for s in /sys/class/block/"$1"/slaves/*; do
        [ -e "$s" ] || continue
        found=1
        disks_under "$(basename "$s")"
    done
    [ "$found" -eq 1 ] || disk_of "/dev/$1"
}

# How a stacked device calls itself: dm-0 (vg-root), md127 (md/name).
label() {
    if [ -r "/sys/class/block/$1/dm/name" ]; then
        echo "$1 ($(cat "/sys/class/block/$1/dm/name"))"
    elif [ -r "/sys/class/block/$1/md/array_state" ]; then
        echo "$1 (md array)"
    else
        echo "$1"
    fi
}

# The kernel name of a mount's device: by major:minor (any path), else by its source path.
mount_dev() {
    mm=$(findmnt -no MAJ:MIN "$1" 2>/dev/null | head -n 1 | tr -d ' ')
    case "$mm" in
        0:*|"") ;;
        *) if [ -e "/sys/dev/block/$mm" ]; then basename "$(readlink -f "/sys/dev/block/$mm")"; return 0; fi ;;
    esac
    src=$(findmnt -no SOURCE "$1" 2>/dev/null | head -n 1 | sed 's/\[.*//')
    case "$src" in /dev/*) [ -b "$src" ] && name_of "$src" ;; esac
    return 0
}

# Refuses with the rule's name, so the technician knows which check fired.
refuse() {
    rule=$1
    shift
    die "refused ($rule): $*"
}

if [ -b "$target" ]; then
    kind=device
    dev=$(readlink -f "$target")
    disk=$(disk_of "$dev")
    parts=$(parts_of "$disk")
    # Rule "system": the disk of /, /boot and the ESP (and /usr, /var), through any stack.
    for mnt in / /boot /boot/efi /efi /usr /var; do
        mountpoint -q "$mnt" 2>/dev/null || [ "$mnt" = / ] || continue
        mdev=$(mount_dev "$mnt")
        [ -n "$mdev" ] || continue
        for d in $(disks_under "$mdev"); do
            if [ "$d" = "$disk" ]; then
                refuse system "$target holds the running system ($mnt is on $(label "$mdev"), on disk $d); refusing to overwrite it"
            fi
        done
    done
    # Rule "dm": a device-mapper device itself (an LV, a LUKS mapping) is never a flash target.
    if [ -e "/sys/class/block/$disk/dm" ]; then
        refuse dm "$target is the device-mapper device $(label "$disk"); name the disk itself"
    fi
    # Rule "holders": anything stacked on the disk or a partition (LVM LV, dm-crypt, md, bcache).
    for p in $parts; do
        for h in /sys/class/block/"$p"/holders/*; do
            [ -e "$h" ] || continue
            chain=$(stack_of "$p" | while read -r n; do label "$n"; done | paste -sd '>' - | sed 's/>/ <- /g')
            refuse holders "/dev/$p is held by $(label "$(basename "$h")") (in use: $chain)"
        done
    done
    stack=$(for p in $parts; do stack_of "$p"; done)
    # Rule "mounted": the disk, a partition or anything stacked on them, by major:minor and path.
    while read -r _id _parent mm _root mpoint _rest; do
        [ -e "/sys/dev/block/$mm" ] || continue
        n=$(basename "$(readlink -f "/sys/dev/block/$mm")")
        for s in $stack; do
            [ "$n" = "$s" ] && refuse mounted "$target is in use: /dev/$n is mounted on $mpoint; unmount it first"
        done
    done < /proc/self/mountinfo
    while read -r src mpoint _rest; do
        case "$src" in /dev/*) ;; *) continue ;; esac
        [ -b "$src" ] || continue
        n=$(name_of "$src")
        for s in $stack; do
            [ "$n" = "$s" ] && refuse mounted "$target is in use: /dev/$n is mounted on $mpoint; unmount it first"
        done
    done < /proc/mounts
    # Rule "swap": swap on the disk, a partition or a stacked device.
    tail -n +2 /proc/swaps 2>/dev/null | while read -r src _rest; do
        [ -b "$src" ] || continue
        n=$(name_of "$src")
        for s in $stack; do
            [ "$n" = "$s" ] && refuse swap "$target is in use: /dev/$n is active swap; swapoff it first"
        done
    done || exit 1
    # Rules "lvm-pv", "md-member", "luks", "zfs": what the disk says it is, active or not (a
    # member of a volume group or array may be assembled again at the next boot, or elsewhere).
    pvs_list=$(pvs --noheadings -o pv_name 2>/dev/null | while read -r pv; do name_of "$pv"; done || true)
    for p in $parts; do
        for pv in $pvs_list; do
            [ "$pv" = "$p" ] && refuse lvm-pv "/dev/$p is an LVM physical volume (pvs lists it); remove it from its volume group first"
        done
        if [ -r /proc/mdstat ] && grep -q "[[:space:]]$p\[" /proc/mdstat; then
            refuse md-member "/dev/$p is a member of an md array ($(grep "[[:space:]]$p\[" /proc/mdstat | cut -d' ' -f1)); stop the array first"
        fi
        type=$(blkid -p -s TYPE -o value "/dev/$p" 2>/dev/null || true)
        hint="if it is really unused, clear its signatures first (wipefs -a /dev/$p)"
        case "$type" in
            LVM2_member) refuse lvm-pv "/dev/$p is an LVM physical volume; $hint" ;;
            linux_raid_member|*_raid_member) refuse md-member "/dev/$p is an md/RAID member ($type); $hint" ;;
            crypto_LUKS) refuse luks "/dev/$p is a LUKS volume; $hint" ;;
            zfs_member) refuse zfs "/dev/$p is a ZFS pool member; $hint" ;;
        esac
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
