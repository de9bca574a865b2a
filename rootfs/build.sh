#!/bin/bash
# Builds the Witness appliance image (x86_64): a Debian 12 root from mmdebstrap, the project's
# overlay and the witness binary, as a squashfs protected by dm-verity, on a GPT disk with two
# root slots (A filled, B empty), the A/B boot state and room for the data partition the first
# boot creates; and the signed update bundle of the same root.
#
#   rootfs/build.sh --binary target/release/witness [--out DIR] [--cache DIR] [--slot-mb N]
#                   [--data-mb N] [--boot-tries N] [--keyring CA.pem] [--signing-dir DIR]
#                   [--version V]
#
# Run as root, no Docker. Output in DIR (default target/image): disk.raw, vmlinuz, initrd.img,
# cmdline (the kernel command line), roothash, version, root.squashfs, witness-update.raucb (the RAUC
# bundle of this root), build.txt (timings, hashes, the unit's security score, the size table),
# packages.txt (the Debian packages the root was made of, as /usr/share/witness/packages.txt). The bootstrap
# tarball is cached under --cache (default /var/cache/witness-image) keyed by a hash of
# packages.txt, dracut.conf, dracut/ and this script's bootstrap step, so a rebuild that changes
# only the overlay or the binary skips it. Updates are trusted by --keyring (default: the
# development CA in --signing-dir, default CACHE/signing, made by signing.sh when missing).
# --version (default: the binary's own, `witness --version`, plus the build's UTC time as one more
# number, 0.1.0.20261207195800 — SOURCE_DATE_EPOCH's when set, so a reproducible build gets the
# same) goes into /etc/witness/version and the bundle's manifest; the box refuses an update
# older than the root it runs, or of its own version.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$here/../target/image
binary=
cache=/var/cache/witness-image
slot_mb=1024      # each root slot (A and B); an update must fit
verity_mb=32      # each slot's hash tree (≈ 1/128 of the slot, with room)
data_mb=1024      # free space left at the end for the data partition (grown to the disk on first boot)
boot_tries=3      # trial boots a newly installed slot gets to come up healthy before the fall-back
keyring=          # CA certificate(s) update bundles must chain to
signing=          # development signing keys (default: $cache/signing)
version=          # the root's version (default: the binary's plus the build time)
# What the root may hold unpacked (MiB), the fail lines of the size table. The goal: the x86
# image's root — the base, every x86 board profile's add-on (profile-addons.txt: the image ships
# them all) and the witness binary as `cargo xtask image` builds it (the `firmware` profile,
# stripped) — within 200 MB, i.e. 190 MiB (root_budget_mb). The parts have their own lines: the
# base (the root without the binary and the add-ons), each profile's add-on, and the release
# binary; the build fails when a part is over its line, when the root without the binary plus
# the release binary's line is over the root's, or when the root as built (with the binary it
# ships) is over the root's line. The image tests ship a debug build (about three times the
# release one) and raise only the shipped binary's line (WITNESS_BINARY_BUDGET_MB): such a build
# goes on when the root as built is over, but is marked NOT-SHIPPABLE in --out and build.txt and
# gets no signed update bundle, so nothing of it can be installed as an update.
root_budget_mb=190
platform_budget_mb=${WITNESS_PLATFORM_BUDGET_MB:-140}
profile_budget_mb=${WITNESS_PROFILE_BUDGET_MB:-20}
release_binary_budget_mb=36
binary_budget_mb=${WITNESS_BINARY_BUDGET_MB:-$release_binary_budget_mb}
mirror=${WITNESS_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
epoch=${SOURCE_DATE_EPOCH:-1767225600}   # fixed timestamps: same inputs, same root hash

die() { echo "build.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        --cache) cache=$2; shift 2 ;;
        --slot-mb) slot_mb=$2; shift 2 ;;
        --data-mb) data_mb=$2; shift 2 ;;
        --boot-tries) boot_tries=$2; shift 2 ;;
        --keyring) keyring=$2; shift 2 ;;
        --signing-dir) signing=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ -n "$binary" ] || die "--binary PATH (the witness executable to ship) is required"
[ -x "$binary" ] || die "$binary is not an executable file"
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, chroot and file ownership need it)"
case $boot_tries in ''|*[!0-9]*|0) die "--boot-tries must be a number above 0" ;; esac
if [ -z "$version" ]; then
    version=$("$binary" --version 2>/dev/null | awk '{print $2}')
    # Every build its own version, rising: the binary's and the build time (a second's
    # resolution; two builds in one second need --version).
    [ -z "$version" ] || version=$version.$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y%m%d%H%M%S)
fi
case $version in ''|.*|*.|*..*|*[!0-9.]*) die "the version ${version:-(none)} is not a dotted number (1.2.0): pass --version" ;; esac
for tool in mmdebstrap mksquashfs veritysetup sfdisk sha256sum systemd-analyze rauc openssl strip xz; do
    command -v "$tool" >/dev/null || die "$tool is missing: run cargo xtask setup (or apt-get install mmdebstrap squashfs-tools cryptsetup-bin fdisk rauc openssl binutils xz-utils)"
done

t0=$(date +%s)
step_start=$t0
step() {
    local now; now=$(date +%s)
    echo "==> [$(( now - t0 ))s] $*"
    step_start=$now
}
done_step() { echo "    done in $(( $(date +%s) - step_start ))s"; }

mkdir -p "$out" "$cache"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/witness-image.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
root=$work/root
# A private copy: the binary shipped is the one whose libraries were looked at, even if the
# build tree changes it meanwhile.
# Stripped (debug information and the symbol table): most of a build's size, and every byte of
# the root is read again for each update. Panics still name the file and line.
cp "$binary" "$work/witness"
strip --strip-all "$work/witness"
# The firewall loader that runs as root is its own small binary, built beside `witness`.
egress_binary=$(dirname "$binary")/witness-egress
[ -x "$egress_binary" ] || die "$egress_binary is missing: build it beside witness (cargo build -p witness-egress)"
cp "$egress_binary" "$work/witness-egress"
strip --strip-all "$work/witness-egress"
binary=$work/witness
if [ -z "$keyring" ]; then
    signing=${signing:-$cache/signing}
    "$here/signing.sh" "$signing"
    keyring=$signing/dev-ca.cert.pem
fi
[ -s "$keyring" ] || die "--keyring $keyring is not a certificate file"

# --- 1. bootstrap (cached) ---------------------------------------------------------------
# The binary's shared libraries come from the Debian packages that hold them on this (Debian 12)
# build machine; a binary linking GStreamer (RDP video) also gets the encoder plugins.
ldd "$binary" | grep -q 'not found' && die "$binary needs libraries this machine lacks: $(ldd "$binary" | grep 'not found' | tr -s ' \t\n' ' ')"
libpkgs=$(ldd "$binary" | awk '/=> \//{print $3}' | while read -r lib; do
    dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null || echo "UNKNOWN:$lib"
done | cut -d: -f1 | sort -u | tr '\n' ' ')
case $libpkgs in *UNKNOWN*) die "$binary links a library no Debian package holds ($libpkgs)" ;; esac
case $libpkgs in *gstreamer*) libpkgs="$libpkgs gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly" ;; esac
packages=$( { grep -v '^#' "$here/packages.txt"; echo "$libpkgs" | tr ' ' '\n'; } | grep -v '^[[:space:]]*$' | sort -u | tr '\n' ',' | sed 's/,$//')
bootstrap_cmd="mmdebstrap --variant=minbase --include=$packages --dpkgopt=path-exclude=/usr/share/man/* --dpkgopt=path-exclude=/usr/share/locale/* --dpkgopt=path-include=/usr/share/locale/locale.alias --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-include=/usr/share/doc/*/copyright $suite $mirror"
key=$( { echo "$bootstrap_cmd"; cat "$here/dracut.conf"; tar -C "$here" --sort=name --mtime=@0 --owner=0 --group=0 -cf - dracut; } | sha256sum | cut -c1-16)
tarball=$cache/bootstrap-$suite-$key.tar
if [ -s "$tarball" ]; then
    step "bootstrap: cached $(basename "$tarball")"
else
    step "bootstrap: mmdebstrap $suite minbase + $(echo "$packages" | tr ',' ' ' | wc -w) packages (not cached: $key)"
    partial=${tarball%.tar}.partial.tar   # mmdebstrap picks the format from the extension
    # dracut's configuration and the A/B slot module go in before the kernel's postinst builds
    # the initrd.
    # shellcheck disable=SC2086
    mmdebstrap --quiet --variant=minbase --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --setup-hook="mkdir -p \"\$1/etc/dracut.conf.d\" \"\$1/usr/lib/dracut/modules.d\" \"\$1/usr/lib/witness\" && cp '$here/dracut.conf' \"\$1/etc/dracut.conf.d/10-witness.conf\" && cp -r '$here/dracut/90witness-slot' \"\$1/usr/lib/dracut/modules.d/\" && cp '$here/dracut/90witness-slot/bootstate.sh' \"\$1/usr/lib/witness/bootstate.sh\"" \
        "$suite" "$partial" "$mirror"
    mv "$partial" "$tarball"
    # Keep only the newest few bootstraps.
    ls -t "$cache"/bootstrap-*.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
    done_step
fi

# --- 2. root tree: bootstrap + overlay + binary ------------------------------------------
step "root: unpack, overlay, witness binary"
mkdir -p "$root"
tar --numeric-owner -xpf "$tarball" -C "$root"
cp -a "$here/overlay/." "$root/"
# RAUC's D-Bus API is root's only: Debian's rauc-service policy ("allows anyone to control rauc")
# goes; the overlay's /etc/dbus-1/system.d/de.pengutronix.rauc.conf is the one left.
rm -f "$root/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf"
grep -q 'policy user="root"' "$root/etc/dbus-1/system.d/de.pengutronix.rauc.conf" || die "the overlay's RAUC D-Bus policy is missing"
install -m 0755 "$binary" "$root/usr/bin/witness"
install -m 0755 "$work/witness-egress" "$root/usr/bin/witness-egress"
install -m 0644 "$keyring" "$root/etc/rauc/keyring.pem"
sed -i "s/^WITNESS_BOOT_TRIES=.*/WITNESS_BOOT_TRIES=$boot_tries/" "$root/etc/witness/boot.conf"
echo "$version" > "$root/etc/witness/version"
chroot "$root" /bin/sh -eu <<'EOF'
# The daemon's own user: no login, no shell, no home outside its data.
getent group witness >/dev/null || groupadd --system witness
getent passwd witness >/dev/null || useradd --system --gid witness --home-dir /var/lib/witness --no-create-home --shell /usr/sbin/nologin witness
# The board's devices (encoder, panel, sensors, TPM) go to these groups
# (/etc/udev/rules.d/70-witness-devices.rules); witness.service opens only their classes.
for g in video render gpio i2c tss; do
    getent group "$g" >/dev/null || groupadd --system "$g"
done
usermod -a -G video,render,gpio,i2c,tss witness
# Nobody logs in on the box: root has no password (locked) and no console getty runs.
passwd -l root >/dev/null
usermod -s /usr/sbin/nologin root
systemctl enable witness.service witness-firstboot.service witness-data.service var-lib-witness.mount \
    witness-measure.service witness-seal.service witness-devices.service \
    witness-boot-check.service witness-journal-upload.service witness-egress.service witness-egress.path witness-egress.timer \
    witness-console.path \
    nftables.service systemd-networkd.service systemd-resolved.service systemd-timesyncd.service >/dev/null 2>&1
systemctl mask getty@tty1.service serial-getty@ttyS0.service console-getty.service \
    systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service >/dev/null 2>&1
ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
# Read-only root: an empty machine-id makes systemd mount a fresh one from /run at each boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
mkdir -p /var/lib/witness
EOF
# A root on squashfs is read-only: the data partition is the only place written to.
chroot "$root" nft -c -f /etc/nftables.conf || die "rootfs/overlay/etc/nftables.conf does not load (nft -c)"
kver=$(ls "$root/lib/modules" | sort -V | tail -1)
[ -f "$root/boot/initrd.img-$kver" ] || die "no initrd for kernel $kver in the bootstrap (dracut)"
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
done_step

# --- 2b. trim: the root holds what the box runs ----------------------------------------------
step "trim: GStreamer plugins, GL/LLVM, kernel and initrd, hwdb, iconv, ICU data, package manager, libraries nothing links"
du_mb() { { du -sm "$@" 2>/dev/null || true; } | awk '{s+=$1} END {print s+0}'; }
before_mb=$(du_mb "$root")
# The kernel and the initrd are loaded by the boot loader (QEMU: -kernel, -initrd; both are
# outputs of this build beside the disk), never from the root. Its configuration stays in /boot.
rm -f "$root"/boot/initrd.img-* "$root"/boot/vmlinuz-* "$root"/vmlinuz "$root"/vmlinuz.old \
    "$root"/initrd.img "$root"/initrd.img.old
lib=$(find "$root/usr/lib" -maxdepth 1 -type d -name '*-linux-gnu*' | sort | head -n 1)
[ -n "$lib" ] || die "no multiarch library folder under /usr/lib"
if [ -d "$lib/gstreamer-1.0" ]; then
    # Only the plugins holding the elements the encoder table and the recorder name.
    keep=$(grep -v '^#' "$here/gstreamer-plugins.txt" | awk 'NF {print $1}')
    for f in "$lib"/gstreamer-1.0/libgst*.so; do
        grep -qxF "$(basename "$f")" <<< "$keep" || rm -f "$f"
    done
    # No GL stack: Mesa's DRI and VA drivers and the LLVM (and Z3) they need. No board's
    # encoder uses GL; the VA driver kept is Intel's (iHD, intel-media-va-driver: profile
    # x86-generic's vah264lpenc/vah264enc).
    find "$lib/dri" -mindepth 1 ! -name iHD_drv_video.so -delete 2>/dev/null || true
    rm -rf "$lib/vdpau" "$lib"/libLLVM-*.so* "$lib"/libz3.so*
    # The Intel Media SDK (libmfxhw64 14 MiB, its plugins in mfx/ 12 MiB, the legacy dispatcher
    # libmfx and its tracer): its runtime is a layer over the same VA driver (iHD) and supports
    # Broadwell to Tiger Lake only, where vah264lpenc/vah264enc, ahead of qsvh264enc in the
    # encoder table, encode on that driver directly (Alder Lake and later need oneVPL's runtime,
    # libmfx-gen, not this one). GStreamer 1.22's qsv plugin stays, so qsvh264enc reports "device
    # present, encoder failed" on Intel hardware and the table goes on; the plugins were never
    # loaded (the qsv plugin's oneVPL dispatcher has no plugin API).
    rm -rf "$lib/mfx" "$lib"/libmfx*.so* "$root/usr/share/mfx"
fi
# What the packages bring that nothing on a headless, read-only box runs; the libraries only
# these pieces link go with the library pass below. Each line says who brought it.
#   perl (usrmerge's, for the bootstrap only; perl-base stays: /usr/bin/perl)
rm -rf "$lib/perl" "$root/usr/share/perl" "$root"/usr/bin/perl5.*-*-linux-gnu
#   Tesseract's training tools (the box runs only `tesseract`) and its orientation data
#   (the box reads with --psm 6, which never detects orientation)
chroot "$root" dpkg-query -L tesseract-ocr | grep '^/usr/bin/' | grep -vx /usr/bin/tesseract \
    | sed "s|^|$root|" | xargs -r rm -f
rm -f "$root"/usr/share/tesseract-ocr/*/tessdata/osd.traineddata
#   GStreamer plugins' desktop stack: GTK and its modules, pixbuf loaders, DirectFB, libcaca,
#   OpenNI, PulseAudio, icons, sounds, fonts, X keyboard data, MIME and ISO-code tables
rm -rf "$lib/gtk-3.0" "$lib/libgtk-3-0" "$lib/gdk-pixbuf-2.0" "$lib"/directfb-* "$lib/caca" \
    "$lib/OpenNI2" "$lib/pulseaudio" "$lib/avahi" \
    "$root/usr/share/icons" "$root/usr/share/sounds" "$root/usr/share/fonts" "$root/usr/share/X11" \
    "$root/usr/share/themes" "$root/usr/share/mime" "$root"/usr/share/directfb-* \
    "$root/usr/share/iso-codes" "$root/usr/share/xml/iso-codes" "$root/usr/share/openal"
#   udev's hardware database (13 MiB): what it names (keyboard maps, mouse DPI, accelerometer
#   mounting, USB autosuspend lists, vendor names) is for desktops and laptops; no rule the box
#   relies on reads it (70-witness-devices and 90-witness-update match subsystem, kernel name
#   and the file system label). udev reads an empty database, compiled here from one empty file.
rm -rf "$root/usr/lib/udev/hwdb.d" "$root/usr/lib/udev/hwdb.bin" "$root/etc/udev/hwdb.bin"
mkdir -p "$root/usr/lib/udev/hwdb.d"
echo "# The appliance reads no hardware database entries (rootfs/build.sh)." > "$root/usr/lib/udev/hwdb.d/00-witness.hwdb"
chroot "$root" systemd-hwdb update --usr --strict || die "systemd-hwdb could not compile the empty database"
rm -rf "$root/usr/lib/udev/hwdb.d"
#   glibc's iconv modules (8 MiB, 250 charsets): UTF-8, ASCII and UCS-2/4 are built into glibc;
#   what the box's programs could still ask for (GLib, libarchive, libxml2: a UTF-16/32 or
#   Latin text) stays. The module list and its cache are rewritten to what is left.
gconv=$lib/gconv
keep_gconv=" UTF-16 UTF-32 UTF-7 UNICODE ISO8859-1 ISO8859-15 CP1252 "
if [ -d "$gconv" ]; then
    for f in "$gconv"/*.so; do
        case $keep_gconv in *" $(basename "$f" .so) "*) ;; *) rm -f "$f" ;; esac
    done
    for conf in "$gconv"/gconv-modules "$gconv"/gconv-modules.d/*.conf; do
        [ -f "$conf" ] || continue
        # Module lines whose file is left, and the aliases of the charsets they convert.
        awk -v dir="$gconv" '
            function there(m, f) { f = m; if (f !~ /^\//) f = dir "/" f; f = f ".so"
                                   if ((getline line < f) >= 0) { close(f); return 1 } return 0 }
            FNR == NR { if ($1 == "module" && there($4)) { ok[$2] = 1; ok[$3] = 1 } next }
            $1 == "module" && there($4) { print; next }
            $1 == "alias" && ($3 in ok) { print }
        ' "$conf" "$conf" > "$conf.new"
        mv "$conf.new" "$conf"
    done
    chroot "$root" iconvconfig || die "iconvconfig failed on the trimmed gconv modules"
fi
#   ICU's data (31 MiB): libxml2 links ICU (through libarchive, through Tesseract) and calls it
#   only for a charset neither it nor iconv converts; Tesseract loads its .traineddata itself
#   (libarchive only bids on it and finds no archive). ICU's converters that need no data
#   (UTF-8/16/32, Latin-1, ASCII) still work; every other data look-up answers
#   U_FILE_ACCESS_ERROR, which libxml2 reports as an unsupported encoding. The stand-in is what
#   ICU's own `stubdata` library is: the common-data header (magic 0xda27, format "CmnD" 1.0)
#   with an empty table of contents, exported under the name libicuuc looks for. Built with
#   binutils, for this machine's (little-endian x86-64) layout.
icudata=$(find "$lib" -maxdepth 1 -type f -name 'libicudata.so.*' | sort | head -n 1)
if [ -n "$icudata" ]; then
    icusoname=$(readelf -d "$icudata" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    icuver=${icusoname#libicudata.so.}
    case $icuver in ''|*[!0-9]*) die "cannot tell ICU's version from $icudata ($icusoname)" ;; esac
    cat > "$work/icudata.s" <<ICU
        .section .rodata
        .globl icudt${icuver}_dat
        .type icudt${icuver}_dat, @object
        .size icudt${icuver}_dat, 48
        .balign 16
icudt${icuver}_dat:
        .short 32                       /* headerSize */
        .byte 0xda, 0x27                /* magic */
        .short 20, 0                    /* UDataInfo: size, reserved */
        .byte 0, 0, 2, 0                /* little-endian, ASCII family, sizeof(UChar) 2 */
        .ascii "CmnD"                   /* data format: common data */
        .byte 1, 0, 0, 0                /* format version 1.0 */
        .byte 0, 0, 0, 0                /* data version */
        .zero 8                         /* padding to headerSize */
        .long 0, 0                      /* table of contents: count 0, reserved */
        .long 0, 0                      /* one empty entry, as ICU's stubdata has */
        .section .note.GNU-stack, "", @progbits
ICU
    as -o "$work/icudata.o" "$work/icudata.s" \
        && ld -shared -soname "$icusoname" --build-id=none -o "$work/icudata.so" "$work/icudata.o" \
        || die "assembling the ICU data stand-in failed"
    readelf --dyn-syms -W "$work/icudata.so" | grep -q " icudt${icuver}_dat$" || die "the ICU data stand-in exports no icudt${icuver}_dat"
    install -m 0644 "$work/icudata.so" "$icudata"
fi
#   Documentation: manuals, info pages, changelogs and READMEs were never installed (the
#   bootstrap's path-exclude); the copyright files (8 MiB, most of it 4 KiB blocks of short
#   files) become one xz file of every package's notice, /usr/share/witness/copyright.xz, also
#   beside the image. Debian's common licence texts they point to stay.
mkdir -p "$root/usr/share/witness"
if [ -d "$root/usr/share/doc" ]; then
    ( cd "$root/usr/share/doc" && for d in *; do
        [ -f "$d/copyright" ] || continue
        printf '==> %s <==\n' "$d"; cat "$d/copyright"; echo
    done ) | xz -9 --check=crc32 > "$root/usr/share/witness/copyright.xz"
    [ -s "$root/usr/share/witness/copyright.xz" ] || die "no copyright file was found under /usr/share/doc"
    cp "$root/usr/share/witness/copyright.xz" "$out/copyright.xz"
fi
rm -rf "$root/usr/share/doc" "$root/usr/share/doc-base" "$root/usr/share/man" "$root/usr/share/info" \
    "$root/usr/share/lintian" "$root/usr/share/bug" "$root/usr/share/menu"
#   Package management: the root is never upgraded in place (updates replace the whole slot),
#   so apt, dpkg, debconf, Perl (only they and Debian's maintainer scripts use it) and dracut
#   (the initrd is built here, once) go. /var is a tmpfs on the box (etc/fstab), so nothing the
#   root holds under /var is ever seen: dpkg's state (19 MiB) and the caches go with it, the
#   directories stay. What was installed is kept readable, for the auditor and the bill of
#   materials: /usr/share/witness/packages.txt (package, version, architecture, source), also
#   beside the image as packages.txt.
mkdir -p "$root/usr/share/witness"
{
    printf '# The Debian packages this root was made of (rootfs/build.sh trims files of some, and all of\n# apt, dpkg and Perl): package, version, architecture, source package\n'
    chroot "$root" dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\t${source:Package}\n' | sort
} > "$root/usr/share/witness/packages.txt"
cp "$root/usr/share/witness/packages.txt" "$out/packages.txt"
# (One listing first: dpkg-query goes with dpkg. A package not installed lists nothing.)
pm_files=$(chroot "$root" dpkg-query -L apt libapt-pkg6.0 dpkg debconf perl-base perl perl-modules-5.36 \
    libperl5.36 dracut dracut-core usrmerge 2>/dev/null || true)
[ -n "$pm_files" ] || die "dpkg-query listed no file of dpkg, apt or perl-base"
while read -r f; do
    # (Directories stay, and so do links to them: /bin, /lib are usrmerge's links.)
    [ -n "$f" ] && [ ! -d "$root$f" ] || continue
    if [ -L "$root$f" ] || [ -f "$root$f" ]; then rm -f "$root$f"; fi
done <<< "$pm_files"
rm -rf "$root/usr/lib/dracut" "$root/etc/dracut.conf.d" "$root/usr/share/perl5" "$root/etc/apt" "$root/usr/lib/apt" \
    "$root/etc/dpkg" "$root/usr/share/dpkg" "$root/usr/share/debconf"
find "$root/var" -mindepth 1 ! -type d ! -type l -delete
#   Tools the packages bring for a desktop or a server that the box never starts: fontconfig's
#   (no fonts), the MIME and icon cache updaters (no MIME or icon data), GLib's proxy
#   auto-config runner and dconf (session bus services: the box has no session), the journal's
#   receiving and gateway servers (only systemd-journal-upload sends), iproute2's ARP daemon.
rm -f "$root"/usr/bin/fc-* "$root/usr/bin/update-mime-database" "$root/usr/bin/gtk-update-icon-cache" \
    "$root/usr/libexec/glib-pacrunner" "$root/usr/libexec/dconf-service" \
    "$root"/usr/share/dbus-1/services/org.gtk.GLib.PACRunner.service "$root"/usr/share/dbus-1/services/ca.desrt.dconf.service \
    "$root"/usr/lib/systemd/systemd-journal-{remote,gatewayd} \
    "$root"/usr/lib/systemd/system/systemd-journal-{remote,gatewayd}.{service,socket} \
    "$root/usr/sbin/arpd"
#   Command-line tools the base packages bring that nothing on the box runs: no unit, udev rule,
#   script of the overlay or the initrd, no update or reset path and no test calls them (each
#   was looked for). Locale and terminfo compilers (libc-bin, ncurses-bin), apt's signature
#   checker (gpgv), the OpenSSL command (libssl stays: RAUC, tpm2-tss), iproute2's RDMA, DCB,
#   devlink, TIPC, vDPA, generic-netlink, bridge and traffic-control tools, legacy and unused
#   file-system tools (Minix, BFS, cramfs, e2fsprogs' debugging and ext4 encryption and
#   defragmentation tools), tape tools (cpio, mt, rmt), util-linux's memory, zram, zoned-block,
#   RTC, line-discipline and script-replay tools, coreutils' text-formatting tools, the time-zone
#   compiler (the compiled zones stay).
for t in bin/localedef bin/tic bin/infocmp bin/tabs bin/toe bin/tset bin/captoinfo bin/gpgv bin/openssl \
    bin/rdma sbin/dcb sbin/devlink sbin/tipc sbin/vdpa sbin/genl sbin/rtmon sbin/bridge sbin/tc bin/lnstat \
    bin/ctstat bin/rtstat sbin/mkfs.minix sbin/fsck.minix sbin/mkfs.bfs sbin/mkfs.cramfs sbin/fsck.cramfs \
    sbin/debugfs sbin/e2image sbin/e2freefrag sbin/e4crypt sbin/e4defrag sbin/filefrag sbin/mklost+found \
    bin/cpio bin/mt-gnu bin/mt sbin/rmt-tar sbin/rmt etc/alternatives/mt etc/alternatives/rmt sbin/cfdisk \
    bin/chmem bin/lsmem sbin/zramctl sbin/blkzone bin/scriptlive bin/scriptreplay sbin/rtcwake sbin/ldattach \
    bin/ptx bin/csplit bin/factor bin/numfmt bin/tsort bin/pr bin/nl bin/shuf bin/basenc bin/b2sum bin/pinky \
    bin/diff3 bin/sdiff bin/ipcmk bin/ipcrm bin/isosize bin/fincore bin/uclampset bin/choom sbin/zic; do
    case $t in etc/*) rm -f "$root/$t" ;; *) rm -f "$root/usr/$t" ;; esac
done
# Enablement links of units that went with their packages (apt's and dpkg's timers).
find "$root/etc/systemd/system" -path '*.wants/*' -type l | while read -r l; do
    t=$(readlink "$l")
    case $t in /*) [ -e "$root$t" ] || rm -f "$l" ;; *) [ -e "$l" ] || rm -f "$l" ;; esac
done
# Kernel modules: only those rootfs/kernel-modules.txt names (what an appliance on x86 mini PCs
# and servers, and QEMU, drives: storage, NICs, virtio, dm-verity/squashfs, the firewall, the
# TPM, V4L2 and its mem2mem core, DRM render nodes, GPIO/I2C, watchdogs, sensors) and what they
# depend on (modules.dep lists every module's dependencies, transitively). depmod after.
kmods=$root/usr/lib/modules/$kver/kernel
mapfile -t kpatterns < <(grep -v '^#' "$here/kernel-modules.txt" | awk 'NF {print $1}')
[ ${#kpatterns[@]} -gt 0 ] || die "rootfs/kernel-modules.txt names no module"
declare -A kkeep=() kused=()
while IFS=: read -r kmod kdeps; do
    for p in "${kpatterns[@]}"; do
        # shellcheck disable=SC2053
        if [[ ${kmod#kernel/} == $p ]]; then
            kused[$p]=1
            kkeep[$kmod]=1
            for d in $kdeps; do kkeep[$d]=1; done
            break
        fi
    done
done < "$root/usr/lib/modules/$kver/modules.dep"
for p in "${kpatterns[@]}"; do
    [ -n "${kused[$p]:-}" ] || die "rootfs/kernel-modules.txt: $p names no module of kernel $kver"
done
kgone=0
while read -r f; do
    [ -n "${kkeep[${f#"$root/usr/lib/modules/$kver/"}]:-}" ] && continue
    rm -f "$f"
    kgone=$((kgone + 1))
done < <(find "$kmods" -name '*.ko*')
find "$kmods" -depth -type d -empty -delete
echo "    kernel modules: ${#kkeep[@]} kept (rootfs/kernel-modules.txt and their dependencies), $kgone removed"
# A module whose dependency went cannot load: it goes too, until every module left has all of
# its dependencies (modinfo's depends; Debian's System.map is a stub, so not depmod -e).
chroot "$root" /bin/bash -s "/usr/lib/modules/$kver/kernel" <<'PRUNE' || die "pruning kernel modules failed"
k=$1; total=0
while :; do
    have=" $(find "$k" -name '*.ko*' | sed 's|.*/||; s|\.ko.*||; s|-|_|g' | tr '\n' ' ') "
    gone=0
    # (A here-string, not process substitution: the chroot has no /proc, so no /dev/fd.)
    listing=$(find "$k" -name '*.ko*' -print0 | xargs -0 modinfo | awk '/^filename:/ {f = $2} /^depends:/ {print f, $2}')
    [ -n "$listing" ] || { echo "modinfo listed no module" >&2; exit 1; }
    while read -r f deps; do
        for dep in ${deps//,/ }; do
            case "$have" in *" ${dep//-/_} "*) ;; *) rm -f "$f"; gone=$((gone + 1)); break ;; esac
        done
    done <<< "$listing"
    total=$((total + gone))
    [ "$gone" -gt 0 ] || break
done
echo "    kernel modules: $total more removed whose dependencies were gone"
PRUNE
# Modules compressed as the kernel's own build does (xz, CRC32): kmod reads them (+XZ) and
# the root loses three quarters of their size unpacked.
find "$root/usr/lib/modules/$kver" -name '*.ko' -print0 \
    | xargs -0 -r -n 64 -P "$(nproc)" xz --check=crc32 --lzma2=dict=1MiB -q
chroot "$root" depmod -a "$kver"
# Libraries nothing left links (NEEDED), repeatedly: what the removed plugins pulled in. Kept
# whatever their links: the ones loaded by name at run time (dlopen). Not among them: libva's
# X11 front-end (nothing on the box draws; GStreamer's va plugin opens libva-drm) and NSS
# (libssl3.so, libnss3.so: OpenSSL is the box's TLS; unversioned names are looked at too).
dlopened='^(libc\.|ld-linux|libnss_|libpam|libmfx|libtss2|libcryptsetup|libva\.|libva-drm|libgst(reamer|base)|libsystemd|libudev|libidn2|libpwquality|libqrencode|libfido2|libbpf|libelf|libdw|libkmod|libseccomp|libblkid|libmount|libgcrypt|libcrypto\.|libssl\.|libzstd|liblz4|liblzma|libz\.|libpcre2|libip4tc|libapparmor|libselinux|libacl|libcap|libaudit)'
# (Here-strings, not pipes, feed the tests below: with pipefail a `grep -q` that stops reading
# early would fail the pipe and read as "not found".)
elf_needed() {
    { find "$root/usr" -type f \( -name '*.so*' -o -perm -u+x \) -print0 2>/dev/null \
        | xargs -0 -r readelf -d 2>/dev/null || true; } | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u
}
pruned=0
while :; do
    needed=$(elf_needed)
    gone=0
    for f in "$lib"/*.so "$lib"/*.so.*; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        name=$(basename "$f")
        grep -qE "$dlopened" <<< "$name" && continue
        soname=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
        [ -n "$soname" ] || continue
        grep -qxF "$soname" <<< "$needed" && continue
        rm -f "$f" "$lib/$soname"
        gone=$((gone + 1))
    done
    pruned=$((pruned + gone))
    [ "$gone" -gt 0 ] || break
done
# Links left dangling by the removals (relative ones, resolved inside the root).
for l in "$lib"/*; do
    if [ -L "$l" ] && [ ! -e "$l" ]; then
        case $(readlink "$l") in /*) ;; *) rm -f "$l" ;; esac
    fi
done
# Nothing the box runs may miss a library now.
missing=$(chroot "$root" /bin/sh -c 'for f in /usr/bin/witness /usr/bin/witness-egress /usr/lib/*-linux-gnu*/gstreamer-1.0/*.so /usr/lib/*-linux-gnu*/dri/*.so; do [ -e "$f" ] && ldd "$f" | grep "not found" | sed "s|^|$f: |"; done' || true)
[ -z "$missing" ] || die "trimming removed a library still needed: $missing"
# Tesseract reads a sheet as the daemon hands it one (a PGM through stdin, --psm 6): the trim
# (ICU's data, the iconv modules, the libraries) left it working. ocr-check.pgm.gz is a line of
# DejaVu Sans 14 pt rendered by Tesseract's text2image.
if [ -x "$root/usr/bin/tesseract" ]; then
    ocr=$(gzip -dc "$here/ocr-check.pgm.gz" | chroot "$root" tesseract stdin stdout -l eng --psm 6 2>/dev/null | tr -s ' \n' ' ' || true)
    case $ocr in *"Witness records every session and reads 42 words"*) ;;
        *) die "tesseract in the trimmed root no longer reads rootfs/ocr-check.pgm.gz (it read: ${ocr:-nothing})" ;;
    esac
    echo "    tesseract in the root reads the check sheet: $ocr"
fi
echo "    removed $(( before_mb - $(du_mb "$root") )) MiB ($pruned libraries nothing linked)"
# What fills the root, against the budget in this recipe.
root_mb=$(du_mb "$root")
witness_mb=$(du_mb "$root/usr/bin/witness")
modules_mb=$(du_mb "$root/usr/lib/modules")
firmware_mb=$(du_mb "$root/usr/lib/firmware")
gst_mb=$(du_mb "$lib/gstreamer-1.0")
libs_mb=$(( $(du_mb "$lib") - gst_mb ))
share_mb=$(du_mb "$root/usr/share")
boot_mb=$(du_mb "$root/boot")
var_mb=$(du_mb "$root/var")
rest_mb=$(( root_mb - witness_mb - modules_mb - firmware_mb - gst_mb - libs_mb - share_mb - boot_mb - var_mb ))
# What each board profile adds (profile-addons.txt): counted apart from the base, shipped all the same.
addon_rows=()
addons_mb=0
addon_over=
for profile in $(grep -v '^#' "$here/profile-addons.txt" | awk 'NF {print $1}' | sort -u); do
    [ -f "$here/../board/profiles/$profile.toml" ] || die "profile-addons.txt names $profile, which has no board/profiles/$profile.toml"
    paths=()
    for glob in $(awk -v p="$profile" '$1 == p {print $2}' "$here/profile-addons.txt"); do
        for f in "$root"/$glob; do [ -e "$f" ] && paths+=("$f"); done
    done
    mb=0
    [ ${#paths[@]} -eq 0 ] || mb=$(du -scm "${paths[@]}" | tail -1 | cut -f1)
    addon_rows+=("profile $profile adds" "$mb")
    addons_mb=$(( addons_mb + mb ))
    [ "$mb" -le "$profile_budget_mb" ] || addon_over="$addon_over $profile ($mb MiB)"
done
base_mb=$(( root_mb - witness_mb - addons_mb ))
size_table=$(printf '    %-38s %6s\n' \
    "witness binary" "$witness_mb" \
    "kernel modules (/usr/lib/modules)" "$modules_mb" \
    "firmware (/usr/lib/firmware)" "$firmware_mb" \
    "GStreamer plugins" "$gst_mb" \
    "other shared libraries" "$libs_mb" \
    "/usr/share" "$share_mb" \
    "/boot (the kernel's configuration)" "$boot_mb" \
    "/var (a tmpfs on the box: empty)" "$var_mb" \
    "everything else" "$rest_mb" \
    "root, unpacked" "$root_mb" \
    "root without the witness binary" "$(( root_mb - witness_mb ))" \
    "${addon_rows[@]}" \
    "base: without the binary and profiles" "$base_mb" \
    "x86 root with the release binary's line" "$(( root_mb - witness_mb + release_binary_budget_mb ))" \
    "budget: x86 root (200 MB)" "$root_budget_mb" \
    "budget: base" "$platform_budget_mb" \
    "budget: each profile's add-on" "$profile_budget_mb" \
    "budget: release witness binary" "$release_binary_budget_mb" \
    "budget: shipped witness binary" "$binary_budget_mb")
echo "    size (MiB):"
echo "$size_table"
[ "$base_mb" -le "$platform_budget_mb" ] || die "the base root (without the witness binary and the profiles' add-ons) is $base_mb MiB unpacked, over the recipe's budget of $platform_budget_mb MiB (platform_budget_mb in build.sh)"
[ -z "$addon_over" ] || die "a profile's add-on is over the recipe's budget of $profile_budget_mb MiB (profile_budget_mb in build.sh):$addon_over"
[ $(( root_mb - witness_mb + release_binary_budget_mb )) -le "$root_budget_mb" ] || die "the root without the witness binary is $(( root_mb - witness_mb )) MiB unpacked: with the release binary's line ($release_binary_budget_mb MiB) it is over the x86 root's budget of $root_budget_mb MiB (root_budget_mb in build.sh)"
# The root as built, with the binary it ships, against the root's line.
shippable=yes
if [ "$root_mb" -gt "$root_budget_mb" ]; then
    [ -n "${WITNESS_BINARY_BUDGET_MB:-}" ] || die "the root as built is $root_mb MiB unpacked, over the x86 root's budget of $root_budget_mb MiB (root_budget_mb in build.sh)"
    shippable="no: the root as built is $root_mb MiB, over the x86 root's budget of $root_budget_mb MiB (a test build: WITNESS_BINARY_BUDGET_MB=$WITNESS_BINARY_BUDGET_MB)"
    echo "    NOT SHIPPABLE: $shippable; no update bundle is made"
fi
[ "$witness_mb" -le "$binary_budget_mb" ] || die "the witness binary is $witness_mb MiB stripped, over its budget of $binary_budget_mb MiB (release_binary_budget_mb in build.sh; WITNESS_BINARY_BUDGET_MB for a debug build)"
{ gzip -dc < "$out/initrd.img" 2>/dev/null || zstd -dc < "$out/initrd.img" 2>/dev/null || true; } \
    | grep -aq systemd-veritysetup-generator || die "the initrd has no systemd-veritysetup (dracut.conf)"
{ gzip -dc < "$out/initrd.img" 2>/dev/null || zstd -dc < "$out/initrd.img" 2>/dev/null || true; } \
    | grep -aq 'Witness A/B slot choice' || die "the initrd has no witness-slot module (dracut/90witness-slot)"
security=$(systemd-analyze security --offline=yes --root="$root" witness.service 2>&1 | tail -1)
echo "    kernel $kver; witness.service: $security"
done_step

# --- 3. squashfs + dm-verity ---------------------------------------------------------------
step "root: squashfs (lz4) + dm-verity"
mksquashfs "$root" "$work/root.squashfs" -noappend -quiet -no-progress -comp lz4 \
    -mkfs-time "$epoch" -all-time "$epoch" -reproducible >/dev/null
squash_bytes=$(stat -c %s "$work/root.squashfs")
[ "$squash_bytes" -le $(( slot_mb * 1024 * 1024 )) ] || die "the root ($squash_bytes bytes) does not fit a ${slot_mb} MiB slot: raise --slot-mb"
# Salt and UUID come from the content, so the same inputs give the same root hash.
content=$(sha256sum "$work/root.squashfs" | cut -d' ' -f1)
vuuid=$(echo "$content" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
veritysetup format "$work/root.squashfs" "$work/root.verity" --salt="$content" --uuid="$vuuid" \
    --root-hash-file="$work/roothash" >/dev/null
roothash=$(cat "$work/roothash")
verity_bytes=$(stat -c %s "$work/root.verity")
[ "$verity_bytes" -le $(( verity_mb * 1024 * 1024 )) ] || die "the hash tree ($verity_bytes bytes) does not fit ${verity_mb} MiB"
echo "    squashfs $(( squash_bytes / 1024 / 1024 )) MiB, hash tree $(( verity_bytes / 1024 )) KiB, root hash $roothash"
done_step

# --- 4. GPT disk -----------------------------------------------------------------------------
step "disk: GPT with root A (+verity), empty root B (+verity), boot state, room for data"
# Partition UUIDs derive from the root hash as the Discoverable Partitions Spec has it (data:
# first half, hash: second half); the B slot's are fixed so updates can find them.
half() { echo "$1" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/'; }
root_type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709      # root, x86-64
verity_type=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5    # root verity, x86-64
mib=2048   # sectors per MiB
disk=$work/disk.raw
total_mb=$(( 1 + 2 * (slot_mb + verity_mb) + 1 + data_mb + 1 ))
truncate -s "${total_mb}M" "$disk"
a=$mib; av=$(( a + slot_mb * mib )); b=$(( av + verity_mb * mib )); bv=$(( b + slot_mb * mib ))
bs=$(( bv + verity_mb * mib ))
sfdisk --quiet "$disk" <<EOF
label: gpt
label-id: $(half "$(echo "witness-disk-$roothash" | sha256sum)")
start=$a, size=$(( slot_mb * mib )), type=$root_type, name=root-a, uuid=$(half "${roothash:0:32}")
start=$av, size=$(( verity_mb * mib )), type=$verity_type, name=root-a-verity, uuid=$(half "${roothash:32:32}")
start=$b, size=$(( slot_mb * mib )), type=$root_type, name=root-b, uuid=5a7e0000-0000-4000-8000-00000000000b
start=$bv, size=$(( verity_mb * mib )), type=$verity_type, name=root-b-verity, uuid=5a7e0000-0000-4000-8000-0000000000bf
start=$bs, size=$mib, type=0fc63daf-8483-4772-8e79-3d69d8477de4, name=witness-boot, uuid=5a7e0000-0000-4000-8000-00000000b007
EOF
dd if="$work/root.squashfs" of="$disk" bs=1M seek=$(( a / mib )) conv=notrunc,sparse status=none
dd if="$work/root.verity" of="$disk" bs=1M seek=$(( av / mib )) conv=notrunc,sparse status=none
# The A/B boot state: slot A holds this root and is good, B is empty. The initrd maps the slot
# it names through dm-verity with the root hash it records (dracut/90witness-slot/).
state=$work/bootstate
truncate -s 1M "$state"
(
    # shellcheck source=rootfs/dracut/90witness-slot/bootstate.sh
    BOOTSTATE_DEV=$state; . "$here/dracut/90witness-slot/bootstate.sh"
    BS=$BOOTSTATE_MAGIC
    bs_set primary a; bs_set a_state good; bs_set a_tries 0; bs_set a_hash "$roothash"
    bs_set b_state empty; bs_set b_tries 0; bs_set b_hash ""
    bs_save
)
dd if="$state" of="$disk" bs=1M seek=$(( bs / mib )) conv=notrunc status=none
cmdline="console=ttyS0 root=/dev/mapper/root rootfstype=squashfs ro panic=-1"
mv "$disk" "$out/disk.raw"
echo "$roothash" > "$out/roothash"
echo "$version" > "$out/version"
echo "$cmdline" > "$out/cmdline"
done_step

# --- 5. update bundle ------------------------------------------------------------------------
step "bundle: the same root as a signed RAUC update"
cp --sparse=always "$work/root.squashfs" "$out/root.squashfs"
rm -f "$out/witness-update.raucb" "$out/NOT-SHIPPABLE"
if [ "$shippable" != yes ]; then
    echo "$shippable" > "$out/NOT-SHIPPABLE"
    echo "    not shippable: no update bundle ($out/NOT-SHIPPABLE)"
elif [ -n "$signing" ]; then
    "$here/bundle.sh" --root "$work/root.squashfs" --out "$out/witness-update.raucb" --signing-dir "$signing"
else
    echo "    no development signing keys (--keyring given): sign with rootfs/bundle.sh --key --cert"
fi
done_step

total=$(( $(date +%s) - t0 ))
cat > "$out/build.txt" <<EOF
witness image, built $(date -u +%Y-%m-%dT%H:%M:%SZ) in ${total}s
bootstrap: $(basename "$tarball")
kernel: $kver
binary: sha256 $(sha256sum "$binary" | cut -d' ' -f1)
root hash: $roothash
version: $version
squashfs: $squash_bytes bytes; slots: ${slot_mb} MiB each; data reserve: ${data_mb} MiB
witness.service: $security
shippable: $shippable
size (MiB), squashfs $(( squash_bytes / 1048576 )) compressed:
$size_table
update keyring: $(openssl x509 -in "$keyring" -noout -subject 2>/dev/null | sed 's/^subject=//'); trial boots: $boot_tries
EOF
echo "==> [${total}s] image ready in $out: disk.raw ($total_mb MiB, sparse), vmlinuz, initrd.img, cmdline"
