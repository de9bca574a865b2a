#!/bin/bash
# Makes a signed RAUC update bundle (verity format) from a root squashfs: the squashfs, its
# dm-verity hash tree (salt and UUID from the content, as build.sh makes them) and the root hash.
# Installed on the box, it goes into the slot not running; the initrd boots it on trial.
#
#   rootfs/bundle.sh --root root.squashfs --out witness-update.raucb [--version V]
#                    [--key KEY.pem --cert CERT.pem] [--signing-dir DIR]
#
# Without --key/--cert it signs with the development key in --signing-dir (default
# /var/cache/witness-image/signing, made by signing.sh when missing). The bundle's version is
# the root's own /etc/witness/version (build.sh writes it); --version must agree with it. The
# box refuses a bundle older than its running root (update-version-check).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "bundle.sh: $*" >&2; exit 1; }
root='' out='' version='' key='' cert=''
signing=/var/cache/witness-image/signing
while [ $# -gt 0 ]; do
    case $1 in
        --root) root=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --key) key=$2; shift 2 ;;
        --cert) cert=$2; shift 2 ;;
        --signing-dir) signing=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
if [ -z "$root" ] || [ -z "$out" ]; then die "--root SQUASHFS and --out FILE are required"; fi
[ -f "$root" ] || die "$root is not a file"
for tool in rauc veritysetup mksquashfs unsquashfs; do
    command -v "$tool" >/dev/null || die "$tool is missing: run cargo xtask setup (or apt-get install rauc cryptsetup-bin squashfs-tools)"
done
if [ -z "$key$cert" ]; then
    "$here/signing.sh" "$signing"
    key=$signing/dev-signing.key.pem
    cert=$signing/dev-signing.cert.pem
fi
if [ ! -f "$key" ] || [ ! -f "$cert" ]; then die "--key and --cert must both name PEM files"; fi

# The version the box compares with its running root's: the one inside this root.
root_version=$(unsquashfs -cat "$root" etc/witness/version 2>/dev/null | head -n 1 || true)
if [ -z "$version" ]; then
    version=$root_version
    [ -n "$version" ] || die "$root has no /etc/witness/version: pass --version (a dotted number)"
elif [ -n "$root_version" ] && [ "$version" != "$root_version" ]; then
    die "--version $version differs from the root's /etc/witness/version $root_version"
fi
case $version in ''|.*|*.|*..*|*[!0-9.]*) die "version $version is not a dotted number (1.2.0)" ;; esac

work=$(mktemp -d "${TMPDIR:-/var/tmp}/witness-bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
content=$work/content
mkdir "$content"
cp --reflink=auto "$root" "$content/root.squashfs"
sum=$(sha256sum "$content/root.squashfs" | cut -d' ' -f1)
vuuid=$(echo "$sum" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
veritysetup format "$content/root.squashfs" "$content/root.verity.img" --salt="$sum" --uuid="$vuuid" \
    --root-hash-file="$content/root.roothash" >/dev/null
roothash=$(cat "$content/root.roothash")
cat > "$content/manifest.raucm" <<MANIFEST
[update]
compatible=witness-x86_64
version=$version
description=witness root $roothash

[bundle]
format=verity

[image.rootfs]
filename=root.squashfs

[image.verity]
filename=root.verity.img
MANIFEST
rm -f "$out"
# The images are compressed already: the bundle's squashfs only stores them.
rauc bundle --cert="$cert" --key="$key" --mksquashfs-args="-noI -noD -noF -noX" \
    "$content" "$out" >/dev/null
echo "bundle.sh: $out ($(( $(stat -c %s "$out") / 1048576 )) MiB), version $version, root hash $roothash"
