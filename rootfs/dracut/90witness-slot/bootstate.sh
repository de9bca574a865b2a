# shellcheck shell=sh
# The A/B boot state: a few key=value lines in the first block of the witness-boot partition
# (GPT name witness-boot, 1 MiB), kept twice (blocks 0 and 1) so a write cut by a power loss
# leaves the other copy. Sourced by the initrd's slot choice and by the root's RAUC backend,
# install handler and boot check; POSIX sh with dd and sed only (the initrd has little more).
#
#   primary=a|b          the slot the next boot tries first
#   a_state=good|trying|bad|empty    good: came up healthy; trying: installed, on trial
#   a_tries=N            trial boots left while a_state=trying
#   a_hash=HEX           the slot's dm-verity root hash (from its signed bundle)
#   (and the same for b)
BOOTSTATE_DEV=${BOOTSTATE_DEV:-/dev/disk/by-partlabel/witness-boot}
BOOTSTATE_MAGIC="# witness boot state v1"
BS=

# Reads block $1 into BS if it is a whole state (magic first, "end" last).
bs_read_block() {
    _b=$(dd if="$BOOTSTATE_DEV" bs=4096 skip="$1" count=1 2>/dev/null | tr -d '\000')
    case $_b in
        "$BOOTSTATE_MAGIC"*) ;;
        *) return 1 ;;
    esac
    [ "$(printf '%s\n' "$_b" | sed -n '$p')" = end ] || return 1
    BS=$(printf '%s\n' "$_b" | sed '$d')
}

bs_load() {
    bs_read_block 0 || bs_read_block 1 || { echo "no valid boot state on $BOOTSTATE_DEV" >&2; return 1; }
}

bs_get() {
    printf '%s\n' "$BS" | sed -n "s/^$1=//p" | sed -n 1p
}

bs_set() {
    case $(printf '%s\n' "$BS" | sed -n "/^$1=/p") in
        "") BS=$(printf '%s\n%s=%s' "$BS" "$1" "$2") ;;
        *) BS=$(printf '%s\n' "$BS" | sed "s|^$1=.*|$1=$2|") ;;
    esac
}

# Writes both copies, each synced before the next is touched.
bs_save() {
    for _blk in 0 1; do
        printf '%s\nend\n' "$BS" | dd of="$BOOTSTATE_DEV" bs=4096 seek="$_blk" count=1 \
            iflag=fullblock conv=sync,notrunc,fsync 2>/dev/null || return 1
    done
}

bs_other() {
    case $1 in a) echo b ;; *) echo a ;; esac
}
