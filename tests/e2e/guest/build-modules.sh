#!/bin/bash
# Builds the two kernel test drivers the image tests load in the guest and Debian's kernel does
# not ship (CONFIG_VIDEO_VICODEC and CONFIG_GPIO_SIM are unset in Debian's 6.1 config): vicodec
# (a V4L2 memory-to-memory codec) and gpio-sim (GPIO lines simulated through configfs), out of
# tree, for exactly the image's kernel. TEST ONLY: they never go into the shipped root; the test
# hands them to the guest on a disk of its own (tests/e2e/image.rs).
#
#   tests/e2e/guest/build-modules.sh KVER DEBIAN_VERSION OUT
#
# KVER is the image's kernel (6.1.0-50-amd64), DEBIAN_VERSION its package's (6.1.176-1): the
# headers (linux-headers-KVER, Module.symvers: vermagic and symbol CRCs) and the source
# (linux-source-6.1 of that version: only the files below are unpacked) must be installed
# (`cargo xtask setup` installs them for the kernel bookworm's linux-image-amd64 names).
# Two helpers the drivers select are unset in Debian's config too, so each goes into its module:
# v4l2-mem2mem.c (CONFIG_V4L2_MEM2MEM_DEV) into vicodec.ko, irq_sim.c (CONFIG_IRQ_SIM) into
# gpio-sim.ko. irq_sim.c calls irq_to_desc(), which 6.1 does not export to modules; the same
# call through generic_handle_domain_irq() (exported; what later kernels' irq_sim does) runs
# the same flow handler.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 KVER DEBIAN_VERSION OUT" >&2; exit 2; }
kver=$1 debver=$2 out=$3
die() { echo "build-modules.sh: $*" >&2; exit 1; }
headers=/usr/src/linux-headers-$kver
[ -f "$headers/Module.symvers" ] || die "no $headers (the image's kernel headers): run cargo xtask setup (apt-get install linux-headers-$kver)"
series=$(echo "$kver" | cut -d. -f1,2)
have=$(dpkg-query -W -f='${Version}' "linux-source-$series" 2>/dev/null || true)
[ "$have" = "$debver" ] || die "linux-source-$series is ${have:-not installed}, the image's kernel is $debver: run cargo xtask setup (apt-get install linux-source-$series=$debver)"
tarball=/usr/src/linux-source-$series.tar.xz
[ -f "$tarball" ] || die "no $tarball"
work=$(mktemp -d "${TMPDIR:-/tmp}/witness-kmods.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=linux-source-$series
tar -xJf "$tarball" -C "$work" "$src/drivers/media/test-drivers/vicodec" "$src/drivers/media/v4l2-core/v4l2-mem2mem.c" \
    "$src/drivers/gpio/gpio-sim.c" "$src/drivers/gpio/gpiolib.h" "$src/kernel/irq/irq_sim.c"
s=$work/$src
mkdir -p "$work/vicodec" "$work/gpio-sim"
cp "$s"/drivers/media/test-drivers/vicodec/*.[ch] "$s/drivers/media/v4l2-core/v4l2-mem2mem.c" "$work/vicodec/"
# vicodec-core.c and v4l2-mem2mem.c both have a `debug` parameter: one module cannot (the kernel
# refuses the duplicate /sys/module/vicodec/parameters/debug and the load fails).
grep -q '^module_param(debug, bool, 0644);' "$work/vicodec/v4l2-mem2mem.c" || die "v4l2-mem2mem.c of $debver has no debug parameter as expected"
sed -i 's/^module_param(debug, bool, 0644);/module_param_named(m2m_debug, debug, bool, 0644);/' "$work/vicodec/v4l2-mem2mem.c"
printf 'obj-m += vicodec.o\nvicodec-objs := vicodec-core.o codec-fwht.o codec-v4l2-fwht.o v4l2-mem2mem.o\n' > "$work/vicodec/Kbuild"
# (A module built of several objects cannot share its name with one of them.)
cp "$s/drivers/gpio/gpio-sim.c" "$work/gpio-sim/gpio-sim-main.c"
cp "$s/drivers/gpio/gpiolib.h" "$s/kernel/irq/irq_sim.c" "$work/gpio-sim/"
grep -q 'handle_simple_irq(irq_to_desc(irqnum));' "$work/gpio-sim/irq_sim.c" || die "irq_sim.c of $debver does not call irq_to_desc() as expected"
sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/(void)irqnum; generic_handle_domain_irq(work_ctx->domain, offset);/' "$work/gpio-sim/irq_sim.c"
printf 'obj-m += gpio-sim.o\ngpio-sim-objs := gpio-sim-main.o irq_sim.o\n' > "$work/gpio-sim/Kbuild"
for m in vicodec gpio-sim; do
    # modpost fails on a symbol the kernel does not export (it prints which).
    make -s -C "$headers" M="$work/$m" modules >"$work/$m.log" 2>&1 || { cat "$work/$m.log" >&2; die "building $m.ko failed"; }
    magic=$(strings "$work/$m/$m.ko" | sed -n 's/^vermagic=//p')
    case $magic in "$kver "*) ;; *) die "$m.ko has vermagic '$magic', not the kernel $kver" ;; esac
done
mkdir -p "$out"
cp "$work/vicodec/vicodec.ko" "$work/gpio-sim/gpio-sim.ko" "$out/"
echo "built vicodec.ko and gpio-sim.ko for $kver ($debver) in $out"
