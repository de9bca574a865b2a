#!/bin/sh
# flash.sh — write a Witness firmware image to a device (or a file) and verify it.
#
#   flash.sh [--yes] [--check-only] IMAGE TARGET
#
# TARGET is a whole block device (/dev/sdX, /dev/mmcblkN, /dev/loopN) or a regular file.
# Refuses, naming the rule: the disk of /, /boot or the ESP through any stack (system); a
# device-mapper device (dm); a disk or partition with holders, recursively (holders); one
# mounted or swap, itself or through its stack (mounted, swap); an LVM PV, md member, LUKS
# volume or ZFS member, active or not (lvm-pv, md-member, luks, zfs); a disk or partition the
# kernel refuses an exclusive open of — mounted in any mount namespace, a btrfs member, any
# claim (busy); a loop device over such a device (loop-backing); a file that backs a loop device
# (loop-backing); a symbolic link as a file target (symlink); anything that is neither a block
# device nor a file, a device smaller than the image. TARGET is resolved once: the disk and each
# partition are held open exclusively (O_EXCL, by a small python3 helper) from the checks through
# the write and the read-back, which go through that held descriptor, so the name cannot be
# pointed elsewhere meanwhile. Asks before writing unless --yes. Uses bmaptool when it and
# IMAGE.bmap exist, else dd. Verifies by reading the written bytes back and comparing SHA-256.
# --check-only runs every check and stops before writing. Standalone POSIX sh plus python3:
# technicians may not have Rust.
set -eu

die() { echo "flash.sh: $*" >&2; exit 1; }
say() { echo "flash.sh: $*" >&2; }

yes=0
check_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --yes) yes=1; shift ;;
        --check-only) check_only=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# The hold: a python3 helper opens TARGET once and keeps it open until this script ends; the
# write and the read-back go through its descriptor (/proc/PID/fd/N), never through the name
# again. A device: opened read-write, and its whole disk opened with O_EXCL — the kernel refuses
# that (EBUSY) while the disk or any partition of it is claimed (mounted in any mount namespace,
# a btrfs or md member, swap, a dm table) and, once held, lets nobody claim them; for a loop
# device, the same for the block device under it, recursively. A file: opened without following
# a link; a new file ("new-file": one that did not exist at the checks) is created, and only if it
# still does not exist. Prints "held FD NAME" (NAME: the kernel name of the device, or
# MAJ:MIN:INODE of the file), "busy DEVICE [loop]" or "error WHY".
HOLD_PY='
import os, stat, sys, time
kind, path = sys.argv[1], sys.argv[2]
parent = os.getppid()
held = []
def say(*words):
    print(*words, flush=True)
def name_of(fd):
    st = os.fstat(fd)
    return os.path.basename(os.path.realpath("/sys/dev/block/%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))))
def claim_disk(fd, depth, loop):
    name = name_of(fd)
    disk = name
    if os.path.exists("/sys/class/block/%s/partition" % name):
        disk = os.path.basename(os.path.realpath("/sys/class/block/%s/.." % name))
    dev = "/dev/" + disk
    try:
        held.append(os.open(dev, os.O_RDONLY | os.O_EXCL))
    except OSError as e:
        say("busy", dev, loop) if e.errno == 16 else say("error", "%s: %s" % (dev, e.strerror))
        sys.exit(1)
    if name_of(held[-1]) != disk:
        say("error", "%s is not the disk %s" % (dev, disk))
        sys.exit(1)
    try:
        backing = open("/sys/class/block/%s/loop/backing_file" % disk).read().strip()
    except OSError:
        return
    try:
        under = os.open(backing, os.O_RDONLY)
    except OSError:
        return
    if stat.S_ISBLK(os.fstat(under).st_mode) and depth < 8:
        claim_disk(under, depth + 1, "loop")
    os.close(under)
try:
    if kind == "device":
        fd = os.open(path, os.O_RDWR)
        if not stat.S_ISBLK(os.fstat(fd).st_mode):
            say("error", path + " is no longer a block device")
            sys.exit(1)
        claim_disk(fd, 0, "")
        name = name_of(fd)
    else:
        new = os.O_CREAT | os.O_EXCL if kind == "new-file" else 0
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | new, 0o644)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            say("error", path + " is not a regular file")
            sys.exit(1)
        name = "%d:%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
except OSError as e:
    say("error", "%s: %s" % (path, e.strerror))
    sys.exit(1)
say("held", fd, name)
while os.getppid() == parent:
    time.sleep(0.2)
'
holder=
hold_dir=
release() {
    [ -z "$holder" ] || kill "$holder" 2>/dev/null || true
    [ -z "$hold_dir" ] || rm -rf "$hold_dir"
}
trap release EXIT
trap 'exit 1' INT TERM HUP
hold() {
    command -v python3 >/dev/null 2>&1 || die "python3 is needed (it holds the target open exclusively from the checks through the write)"
    hold_dir=$(mktemp -d)
    mkfifo "$hold_dir/fifo"
    python3 -c "$HOLD_PY" "$1" "$2" > "$hold_dir/fifo" 2>&2 < /dev/null &
    holder=$!
    read -r hold_status hold_a hold_b < "$hold_dir/fifo" || hold_status=
    case $hold_status in
        held) held=/proc/$holder/fd/$hold_a; held_name=$hold_b ;;
        busy)
            if [ "$hold_b" = loop ]; then
                refuse loop-backing "$target is a loop device over $hold_a, which the kernel refuses to open exclusively: it is in use (mounted, perhaps in another mount namespace, or a member of a mounted file system)"
            fi
            refuse busy "$target: the kernel refuses to open $hold_a exclusively: it is in use (mounted, perhaps in another mount namespace; a member of a mounted multi-device file system such as btrfs; swap; or claimed by a driver)" ;;
        error) die "cannot hold $target open: $hold_a${hold_b:+ $hold_b}" ;;
        *) die "cannot hold $target open (the python3 helper failed)" ;;
    esac
}

if [ -L "$target" ] && [ ! -b "$target" ]; then
    refuse symlink "$target is a symbolic link: name the file itself (a link can be pointed elsewhere between the checks and the write)"
elif [ -b "$target" ]; then
    kind=device
    # Resolved once: every rule below and the hold look at this name, the hold checks it is the
    # same device, and the write goes through the held descriptor.
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
    # Rules "busy" and "loop-backing": what the kernel says, which sees every mount namespace and
    # every claim; held from here through the read-back.
    hold device "$dev"
    [ "$held_name" = "$(name_of "$dev")" ] || die "$target changed while it was checked (now $held_name); nothing written"
elif [ -e "$target" ] && [ ! -f "$target" ]; then
    die "$target is neither a block device nor a regular file; refusing"
else
    kind=file
    parent=$(dirname "$target")
    [ -d "$parent" ] || die "the folder of $target does not exist"
    [ "$(readlink -f "$target")" != "$(readlink -f "$image")" ] || die "image and target are the same file"
    # A file that does not exist yet backs nothing: it is created (exclusively) at the write.
    held_name=
    [ ! -e "$target" ] || hold file "$target"
    # Rule "loop-backing": a file a loop device reads (a VM's disk, a mounted image), by device
    # and inode (any path, any mount namespace), and by the path the loop device names.
    if [ -n "$held_name" ]; then
        losetup -nl -O NAME,BACK-MAJ:MIN,BACK-INO 2>/dev/null | while read -r lname lmm lino; do
            [ "$lmm:$lino" = "$held_name" ] && refuse loop-backing "$target backs the loop device $lname (losetup -l): it is in use; detach it first (losetup -d $lname)"
        done || exit 1
    fi
    for b in /sys/block/loop*/loop/backing_file; do
        [ -r "$b" ] || continue
        if [ "$(readlink -f "$(cat "$b")")" = "$(readlink -f "$target")" ]; then
            refuse loop-backing "$target backs the loop device /dev/$(basename "$(dirname "$(dirname "$b")")"): it is in use; detach it first"
        fi
    done
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

[ -n "$holder" ] || hold new-file "$target"

if command -v bmaptool >/dev/null 2>&1 && [ -f "$image.bmap" ] && [ "$kind" = device ]; then
    say "writing with bmaptool (mapped blocks only)"
    bmaptool copy "$image" "$held" || die "bmaptool failed writing $target"
else
    say "writing with dd"
    if [ "$kind" = file ]; then
        dd if="$image" of="$held" bs=4M conv=fsync status=progress || die "writing $target failed"
    else
        dd if="$image" of="$held" bs=4M conv=fsync,notrunc oflag=direct status=progress 2>&1 >&2 \
            || dd if="$image" of="$held" bs=4M conv=fsync,notrunc status=progress || die "writing $target failed"
    fi
fi
sync

say "verifying (reading back $image_size bytes)"
if [ "$kind" = device ]; then
    # Drop cached pages so the check reads what the device holds.
    blockdev --flushbufs "$held" 2>/dev/null || true
fi
want=$(sha256sum < "$image" | cut -d' ' -f1)
got=$(head -c "$image_size" "$held" | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] || die "verification FAILED: $target holds sha256 $got, the image is $want"
say "verified: sha256 $want"
