#!/bin/sh
# Witness A/B slot choice, in the initrd before the root is mounted: reads the boot state,
# counts a trial boot down or falls back to the other slot when a new one used up its tries
# without coming up healthy, and maps the chosen slot through dm-verity as /dev/mapper/root.
set -eu
. /usr/lib/witness/bootstate.sh
log() { echo "witness-boot: $*"; }

i=0
while [ ! -e "$BOOTSTATE_DEV" ] || [ ! -e /dev/disk/by-partlabel/root-b-verity ]; do
    i=$((i + 1))
    [ $i -le 600 ] || { log "no witness-boot partition (GPT name) after 60s"; exit 1; }
    sleep 0.1
done
bs_load

slot=$(bs_get primary)
case $slot in a|b) ;; *) log "boot state names no primary slot ($slot)"; exit 1 ;; esac
other=$(bs_other "$slot")
trial=0
case $(bs_get "${slot}_state") in
    good) ;;
    trying)
        tries=$(bs_get "${slot}_tries")
        if [ "${tries:-0}" -gt 0 ]; then
            tries=$((tries - 1))
            bs_set "${slot}_tries" "$tries"
            trial=1
        else
            log "slot $slot was not marked good within its trial boots: falling back to slot $other"
            bs_set "${slot}_state" bad
            bs_set primary "$other"
            slot=$other
        fi
        ;;
    *)
        log "slot $slot is $(bs_get "${slot}_state"): falling back to slot $other"
        bs_set primary "$other"
        slot=$other
        ;;
esac
hash=$(bs_get "${slot}_hash")
case $hash in
    ""|*[!0-9a-f]*) log "slot $slot has no root hash in the boot state"; exit 1 ;;
esac
bs_save

if [ $trial = 1 ]; then
    log "booting slot $slot (root-$slot, root hash $hash), trial boot: $tries more left"
else
    log "booting slot $slot (root-$slot, root hash $hash, state $(bs_get "${slot}_state"))"
fi
mkdir -p /run/witness
printf 'WITNESS_SLOT=%s\nWITNESS_TRIAL=%s\nWITNESS_ROOTHASH=%s\n' "$slot" "$trial" "$hash" > /run/witness/boot.env
exec /lib/systemd/systemd-veritysetup attach root "/dev/disk/by-partlabel/root-$slot" \
    "/dev/disk/by-partlabel/root-$slot-verity" "$hash" restart-on-corruption
