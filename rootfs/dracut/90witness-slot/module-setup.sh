#!/bin/bash
# dracut module: the Witness A/B slot choice (witness-slot.service) in the initrd.
# shellcheck disable=SC2154  # moddir, initdir, systemdsystemunitdir come from dracut

check() {
    return 0
}

depends() {
    echo systemd systemd-veritysetup dm
}

install() {
    inst_multiple dd tr sed sleep mkdir cat
    inst_simple "$moddir/bootstate.sh" /usr/lib/witness/bootstate.sh
    inst_simple "$moddir/slot-select.sh" /usr/libexec/witness/slot-select
    chmod 0755 "$initdir/usr/libexec/witness/slot-select"
    inst_simple "$moddir/witness-slot.service" "$systemdsystemunitdir/witness-slot.service"
    mkdir -p "$initdir$systemdsystemunitdir/initrd-root-device.target.wants"
    ln_r "$systemdsystemunitdir/witness-slot.service" \
        "$systemdsystemunitdir/initrd-root-device.target.wants/witness-slot.service"
}
