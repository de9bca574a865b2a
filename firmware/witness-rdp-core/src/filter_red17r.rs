//! Red team `h-red17r`'s attacks on issue 17's promises as built (every PDU judged, no bytes
//! crossing unrecorded): the re-encoding of Share Data PDUs and input, the fast-path output walk
//! and what the recorder draws of it. Each test passes while its hole is open (asserting the
//! attacker's success), so a fixer flips it.
//!
//! The parties are those of the earlier red teams: an insider's client (a patched FreeRDP) and a
//! hostile target (its RDP server patched by an insider who administers it — the reader or
//! writer red team `h-red17m`'s hole 4 already counted). The recording is the video: bytes the
//! client receives that the decoder never draws, and that no gap states, are unrecorded.

use super::red17i::pixel;
use super::red17m::{carries, confirm_active, file, replayed_with_demand_active as replayed, share_data};
use super::red17p::fast_path_update;
use super::*;
use crate::decode::PassiveDecoder;

fn target_io(user_data: Vec<u8>, channel: u16) -> Vec<u8> {
    encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: channel, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

fn client_io(user_data: Vec<u8>, channel: u16) -> Vec<u8> {
    encode_vec(&X224(SendDataRequest { initiator_id: 1007, channel_id: channel, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

/// What the client receives of `frame` from the target, the recorder shown it too: the decoder
/// must take it without an error (no gap is stated).
fn passes_unstated(filter: &mut Filter, decoder: &mut PassiveDecoder, frame: &[u8]) -> Vec<u8> {
    let out = match filter.from_target(frame).unwrap() {
        Verdict::Forward => frame.to_vec(),
        Verdict::Replace(out) => out,
        other => panic!("the filter did not pass it: {other:?}"),
    };
    decoder.observe_target(&out).expect("the recorder takes it without a gap");
    out
}

/// Whether the filter ended the session over it.
fn refused(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Refuse(_))
}

fn injection() -> Injection {
    Injection { username: "root".into(), domain: Some("TGT".into()), password: "target-secret".into() }
}

fn holds(out: &[u8], payload: &[u8]) -> bool {
    out.windows(payload.len()).any(|w| w == payload)
}

/// Hole 1: a Synchronize update carries a file from the target to the client, fast-path or
/// slow-path, and nothing states it. `FastPathWalk::judge` walks only bitmap and palette bodies
/// (`UpdateWalk::fast_path`); a fast-path Synchronize (code 3) has no body in MS-RDPBCGR
/// (2.2.9.1.2.1.3: size 0), yet one of any size passes unread, and the decoder's audit
/// (`decode::audit::fast_path_update`) returns `Ok` for code 3 before looking at the body.
/// Slow-path, `target_data_pdu` passes updateType 3 (`TS_UPDATE_SYNC`: updateType and 2 pad
/// bytes) without a length check, and `share_data_out` re-encodes the Update PDU's raw body
/// (IronRDP keeps it as bytes) — the pad bytes and everything after them cross. FreeRDP skips
/// the body (`fastpath_recv_update_synchronize` seeks at most 2 bytes), so a stock client shows
/// nothing; a patched one reads the file. Capacity: ~32 KiB a fast-path PDU, ~64 KiB a slow-path
/// one, as many PDUs as the link carries, on any grant, with no gap, no log line. Fix shape:
/// a fast-path Synchronize must have size 0 (or be re-encoded without its body); a slow-path
/// one exactly 4 bytes with its pad zero (or re-encoded as `[3, 0, 0, 0]`).
#[test]
fn red17r_synchronize_updates_carry_a_file_to_the_client_unrecorded() {
    let (mut filter, mut decoder, _) = replayed();
    let io = filter.io_channel.expect("connected");
    let payload = file(30_000);
    let fast = fast_path_update(0x03, &payload);
    assert!(refused(&filter.from_target(&fast).unwrap()), "a fast-path synchronize with a body ends the session");
    // As every server sends it, of no body: it passes.
    passes_unstated(&mut filter, &mut decoder, &fast_path_update(0x03, &[]));
    // Slow-path: TS_UPDATE_SYNC with its pad bytes and the file after them.
    let mut sync = vec![0x03, 0x00, 0xAB, 0xCD];
    sync.extend(&payload[..20_000]);
    let frame = target_io(share_data(1002, 0x02, &sync), io);
    assert!(refused(&filter.from_target(&frame).unwrap()), "a slow-path synchronize with bytes of its own");
    let frame = target_io(share_data(1002, 0x02, &sync[..4]), io);
    assert!(refused(&filter.from_target(&frame).unwrap()), "its pad bytes not zero");
    // Exactly its 4 defined bytes: it passes.
    let frame = target_io(share_data(1002, 0x02, &[3, 0, 0, 0]), io);
    passes_unstated(&mut filter, &mut decoder, &frame);
}

/// Hole 2: a palette update carries a file after its colours. `UpdateWalk` stops reading a
/// palette at its updateType (`Step::Rest`: "not read by either peer differently"), and the
/// audit's `palette` takes any update at least 8 + 256 × 3 bytes long, so bytes past the 256th
/// colour pass to the client unread and unstated, fast-path or slow-path (IronRDP and FreeRDP
/// read numberColors colours and stop). In a session of more than 8 bpp (every session through
/// the box: FreeRDP asks 32) the 768 colour bytes are drawn by no one either. Capacity: ~31 KiB
/// a fast-path PDU (the colours included), as often as the target likes. Fix shape: a palette
/// exactly 8 + 3 × numberColors bytes, its pad zero (numberColors 256 — what the stage takes);
/// in a session above 8 bpp, none at all (or its colours zeroed).
#[test]
fn red17r_a_palette_carries_a_file_after_its_colours_to_the_client_unrecorded() {
    let (mut filter, mut decoder, _) = replayed();
    let io = filter.io_channel.expect("connected");
    let payload = file(30_000);
    let mut palette = vec![0x02, 0x00, 0x00, 0x00];
    palette.extend(256u32.to_le_bytes());
    // The colours themselves: drawn by no one above 8 bpp.
    palette.extend(&payload[..768]);
    palette.extend(&payload[768..]);
    let verdict = filter.from_target(&fast_path_update(0x02, &palette)).unwrap();
    assert!(refused(&verdict), "bytes after the colours end the session (fast-path): {verdict:?}");
    let frame = target_io(share_data(1002, 0x02, &palette[..20_000]), io);
    assert!(refused(&filter.from_target(&frame).unwrap()), "slow-path too");
    // Exactly 256 colours, the pad zero: it passes, both ways.
    passes_unstated(&mut filter, &mut decoder, &fast_path_update(0x02, &palette[..8 + 768]));
    passes_unstated(&mut filter, &mut decoder, &target_io(share_data(1002, 0x02, &palette[..8 + 768]), io));
    let mut padded = palette[..8 + 768].to_vec();
    padded[2] = 1;
    assert!(refused(&filter.from_target(&fast_path_update(0x02, &padded)).unwrap()), "its pad not zero");
}

/// A bitmap update of one uncompressed rectangle: destination `dest` (inclusive), the source
/// `width` x `height` at `bpp`, and its `data`.
fn raw_bitmap(dest: [u16; 4], width: u16, height: u16, bpp: u16, data: &[u8]) -> Vec<u8> {
    let mut update = vec![0x01, 0x00, 0x01, 0x00];
    for v in [dest[0], dest[1], dest[2], dest[3], width, height, bpp, 0, u16::try_from(data.len()).unwrap()] {
        update.extend(v.to_le_bytes());
    }
    update.extend(data);
    update
}

/// Hole 3: bitmap bytes no one draws carry a file to the client. The filter walks a bitmap
/// rectangle's header and skips its bitmapLength bytes; the audit (`bitmap_rectangles`) only
/// wants the source at least as wide as the destination and, for rows with padding, at least
/// the padded rows. What the client and the recorder never draw therefore crosses free:
/// (a) source columns right of the destination (FreeRDP's `gdi_Bitmap_Paint` blits the
/// destination's width from the source's left, IronRDP's stage crops by the source stride),
/// (b) the fourth byte of every 32 bpp pixel (BGRX: FreeRDP's framebuffer and the recorder's
/// image ignore it), (c) row padding and bytes after the last padded row at 8, 15/16 and 24 bpp
/// (IronRDP takes `chunks_exact(padded).take(height)`, FreeRDP reads width × height pixels).
/// Here a 1x1 destination carries ~4 KiB in one rectangle at 32 bpp and ~4 KiB at 24 bpp, and
/// the recorder draws the one pixel without a gap. Capacity: up to bitmapLength (64 KiB) a
/// rectangle, every bitmap update the target sends. Fix shape: an uncompressed rectangle's data
/// re-cut in place like a pointer's (source width = destination width, padding and the 32 bpp
/// X byte zeroed, bitmapLength exactly the padded rows), or refused when it is not so.
///
/// Closed (zeroed in place, the update's lengths kept): an uncompressed rectangle's bytes no one
/// draws — columns right of the destination, rows above it, row padding, a 32 bpp pixel's X
/// byte — reach the client as zeros, fast-path (across fragments) or slow-path; its
/// bitmapLength must be exactly its rows, padded to 4 bytes, and rows FreeRDP and IronRDP would
/// start at different bytes (unpadded rows not a multiple of 4 bytes, more than one of them)
/// end the session. **Still open**: the source width and height themselves (which columns and
/// rows of zeros follow: a few bytes a rectangle).
#[test]
fn red17r_bitmap_bytes_no_one_draws_carry_a_file_to_the_client() {
    let (mut filter, mut decoder, _) = replayed();
    let payload = file(8_000);
    // (a) + (b): a 1x1 destination at (10, 10) of a 1024-pixel-wide 32 bpp source: pixel 0 is
    // drawn (red), the other 1023 pixels and pixel 0's X byte are the file.
    let mut data = vec![0x00, 0x00, 0xFF, payload[0]];
    data.extend(&payload[1..4 * 1023 + 1]);
    let out = passes_unstated(
        &mut filter,
        &mut decoder,
        &fast_path_update(0x01, &raw_bitmap([10, 10, 10, 10], 1024, 1, 32, &data)),
    );
    assert!(!holds(&out, &payload[1..9]) && !holds(&out, &[0xFF, payload[0]]), "undrawn columns and X bytes");
    let mut drawn = vec![0x00, 0x00, 0xFF, 0x00];
    drawn.extend([0; 4 * 1023]);
    assert!(holds(&out, &drawn), "the pixel, then zeros");
    assert_eq!(pixel(&decoder, 10, 10), [0x00, 0x00, 0xFF], "the recorder drew the pixel");
    // (c): a 1x1 destination at 24 bpp: one pixel, its row's pad byte, then ~4 KiB after the row.
    let mut data = vec![0xFF, 0x00, 0x00, payload[4096]];
    data.extend(&payload[4097..8_000]);
    let verdict = filter.from_target(&fast_path_update(0x01, &raw_bitmap([20, 20, 20, 20], 1, 1, 24, &data))).unwrap();
    assert!(refused(&verdict), "bytes past the padded rows end the session: {verdict:?}");
    // The row and its pad byte alone: the pad byte leaves as zero.
    let (mut filter, mut decoder, _) = replayed();
    let out = passes_unstated(
        &mut filter,
        &mut decoder,
        &fast_path_update(0x01, &raw_bitmap([20, 20, 20, 20], 1, 1, 24, &data[..4])),
    );
    assert!(holds(&out, &[0xFF, 0x00, 0x00, 0x00]) && !holds(&out, &[0xFF, 0x00, 0x00, payload[4096]]));
    assert_eq!(pixel(&decoder, 20, 20), [0xFF, 0x00, 0x00], "drawn, without a gap");
    // Unpadded rows of 3 bytes, two of them: FreeRDP and the recorder start row 2 apart.
    let verdict =
        filter.from_target(&fast_path_update(0x01, &raw_bitmap([20, 20, 20, 21], 1, 2, 24, &[7; 8]))).unwrap();
    assert!(refused(&verdict), "rows read two ways: {verdict:?}");
    // A source taller than its destination: FreeRDP draws its last rows (bottom-up), the first
    // row is above the destination and leaves as zeros, as slow-path.
    let (mut filter, _, _) = replayed();
    let io = filter.io_channel.expect("connected");
    let mut two_rows = payload[..4].to_vec();
    two_rows.extend([0x10, 0x20, 0x30, 0x40]);
    let update = raw_bitmap([30, 30, 30, 30], 1, 2, 32, &two_rows);
    let frame = target_io(share_data(1002, 0x02, &update), io);
    let verdict = filter.from_target(&frame).unwrap();
    assert!(!carries(&verdict, &frame, &payload[..3]), "{verdict:?}");
    assert!(carries(&verdict, &frame, &[0, 0, 0, 0, 0x10, 0x20, 0x30, 0x00]), "{verdict:?}");
}

/// Hole 4: a Confirm Active from the target reaches the client whole. `target_io` re-encodes
/// Demand Active, Deactivate All and Data PDUs and refuses redirections and Flow PDUs; every
/// other Share Control type `share_pdus` reads passes untouched (`_ => Cow::Borrowed(pdu)`), and
/// the only one left is the client's own Confirm Active (pduType 0x13), which no server sends and
/// nothing reads: `headers_readable` checks its version alone. Its body is up to a TPKT's length
/// of the target's choosing, as often as it likes, after activation. (A stock FreeRDP logs
/// "Client Unexpected pduType" and may end; a patched client reads on.) Fix shape: a Confirm
/// Active from the target ends the session (`TARGET_UNREADABLE`), like any other client PDU.
/// (The recorder counts each as an undecodable screen PDU: the manifest states gaps, not
/// what crossed.)
#[test]
fn red17r_a_confirm_active_from_the_target_carries_a_file_to_the_client() {
    let (mut filter, _, _) = replayed();
    let io = filter.io_channel.expect("connected");
    let payload = file(20_000);
    let mut confirm = u16::try_from(6 + payload.len()).unwrap().to_le_bytes().to_vec();
    confirm.extend(0x0013u16.to_le_bytes());
    confirm.extend(1002u16.to_le_bytes());
    confirm.extend(&payload);
    let frame = target_io(confirm, io);
    let verdict = filter.from_target(&frame).unwrap();
    assert!(refused(&verdict), "a confirm active from the target ends the session: {verdict:?}");
    // Well-formed (a General set holding the file within its length, which IronRDP reads), the
    // same.
    let (mut filter, _, _) = replayed();
    let mut general = vec![1, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0x1D, 0x04, 0, 0, 0, 0, 0, 0, 1, 1];
    general.extend(&payload);
    let frame = target_io(confirm_active(&[(0x01, general)]), io);
    let verdict = filter.from_target(&frame).unwrap();
    assert!(refused(&verdict), "a well-formed one too: {verdict:?}");
    assert!(!carries(&verdict, &frame, &payload));
}

/// Hole 5: the finalization PDUs' fixed fields cross as sent, both ways. `share_data_out`
/// re-encodes Synchronize, Control and Font List / Map as IronRDP read them, and IronRDP keeps
/// every field: a Synchronize's targetUser (2 bytes), a Control's grantId and controlId (6
/// bytes, and which of 4 actions), a Font List's or Map's numberFonts, totalNumFonts and
/// entrySize (6 bytes). MS-RDPBCGR fixes each of them (2.2.1.14–2.2.1.22: the server channel or
/// user id, grantId and controlId 0 from a client, numberFonts 0, entrySize 0x32 / 4), so none
/// is a field a PDU must carry. FINALIZATION_MAX lets 8 a side an activation through, and the
/// count starts again at every Demand Active: a target reactivating (Deactivate All, Demand
/// Active) as often as it likes sends ~48 bytes to the client each time, unbounded, and the
/// client answers each activation with ~48 of its own. Fix shape: write the fields the
/// specification fixes (the box knows the user and server channel ids) and let each action
/// through once, in order, an activation.
///
/// Closed: each finalization PDU (a Synchronize, a Control of each action, a Font List or Map)
/// passes once a side an activation, re-encoded with the fields MS-RDPBCGR fixes — the target
/// user the server channel from a client and the client's user channel from a server, a Granted
/// Control's grantId and controlId the user and server channels and every other action's 0, no
/// fonts, flags first and last, entrySize 50 or 4. FreeRDP and xrdp skip these fields.
#[test]
fn red17r_finalization_pdus_carry_bytes_in_fields_the_specification_fixes() {
    let (mut filter, _, demand_active) = replayed();
    let io = filter.io_channel.expect("connected");
    let user = filter.user_channel().expect("the target's attach user confirm passed").to_le_bytes();
    let payload = file(3 * 8 * 6);
    for round in payload.chunks(8 * 6) {
        // The target reactivates: a Demand Active (the session's own, as it passed) starts the
        // finalization again.
        assert!(matches!(filter.from_target(&demand_active).unwrap(), Verdict::Forward | Verdict::Replace(_)));
        let mut sixes = round.chunks(6);
        // Control, action Granted Control (2): grantId and controlId the file's. It reaches the
        // client with the user and server channels in them.
        let six = sixes.next().unwrap();
        let mut control = 2u16.to_le_bytes().to_vec();
        control.extend(six);
        let frame = target_io(share_data(1002, 0x14, &control), io);
        let verdict = filter.from_target(&frame).unwrap();
        assert!(!carries(&verdict, &frame, six), "{verdict:?}");
        let canonical = [2, 0, user[0], user[1], 0xEA, 0x03, 0, 0];
        assert!(carries(&verdict, &frame, &canonical), "{verdict:?}");
        // A second one the same activation ends the session.
        for six in sixes.take(1) {
            let mut control = 2u16.to_le_bytes().to_vec();
            control.extend(six);
            let frame = target_io(share_data(1002, 0x14, &control), io);
            assert!(refused(&filter.from_target(&frame).unwrap()), "a second granted control");
        }
    }
    // The client's side: a Font List whose numberFonts, totalNumFonts and entrySize are the file's
    // reaches the target as FreeRDP writes one.
    let (mut filter, _, demand_active) = replayed();
    assert!(matches!(filter.from_target(&demand_active).unwrap(), Verdict::Forward | Verdict::Replace(_)));
    let mut font = payload[..4].to_vec();
    font.extend(3u16.to_le_bytes());
    font.extend(&payload[4..6]);
    let frame = client_io(share_data(1007, 0x27, &font), io);
    let verdict = filter.from_client(&frame).unwrap();
    assert!(!carries(&verdict, &frame, &payload[..4]) && !carries(&verdict, &frame, &payload[4..6]), "{verdict:?}");
    assert!(carries(&verdict, &frame, &[0x27, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x32, 0]), "{verdict:?}");
    // Its Synchronize names the server channel, its Cooperate nothing, whatever it wrote there.
    let frame = client_io(share_data(1007, 0x1F, &[1, 0, 0x12, 0x34]), io);
    let verdict = filter.from_client(&frame).unwrap();
    assert!(carries(&verdict, &frame, &[0x1F, 0, 0, 0, 1, 0, 0xEA, 0x03]), "{verdict:?}");
    let frame = client_io(share_data(1007, 0x14, &[4, 0, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC]), io);
    let verdict = filter.from_client(&frame).unwrap();
    assert!(carries(&verdict, &frame, &[0x14, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]), "{verdict:?}");
    // Each once: a second Font List ends the session.
    let frame = client_io(share_data(1007, 0x27, &[0, 0, 0, 0, 3, 0, 0x32, 0]), io);
    assert!(refused(&filter.from_client(&frame).unwrap()), "a second font list");
}

/// Hole 6: input flag bits no protocol defines carry a file to the target, with every key in the
/// key track. The input is re-encoded as IronRDP read it, and IronRDP keeps unknown flag bits on
/// purpose (`from_bits_retain`, "crate-wide policy since #1144"): a slow-path Synchronize event's
/// toggleFlags is a u32 of which 4 bits are defined (28 free), a keyboard or Unicode event's
/// keyboardFlags a u16 of which 4 are (12 free), an extended mouse event's 3 of 16 (13 free);
/// fast-path, a key or Unicode event's 5 flag bits hold 3 defined ones and a sync's 4. One Input
/// PDU holds up to ~1,300 sync events: ~4.5 KiB of a file a PDU, as often as the client likes, to
/// the target's RDP server (xrdp's `xrdp_wm_key_sync` and Windows read the defined bits and pass
/// the rest along). The video shows nothing of it; the key track types nothing for a sync. Fix
/// shape: re-encode with the defined bits only (`from_bits_truncate` at the box), or refuse an
/// event with an undefined bit.
///
/// Closed: every input event, slow-path and fast-path, reaches the target with only the flag
/// bits MS-RDPBCGR defines for its type (masked, not refused: a client's stray bit is no reason
/// to end a session), as the key track reads them.
#[test]
fn red17r_input_flag_bits_no_one_defines_carry_a_file_to_the_target() {
    let mut filter = super::red17i::grant_without_anything();
    filter.desktop = (1024, 768);
    let payload = file(1_000 * 4);
    let mut events = Vec::new();
    let mut count = 0u16;
    for four in payload.chunks(4) {
        // eventTime 0, messageType INPUT_EVENT_SYNC (0), pad, toggleFlags: 4 defined bits kept
        // low (as a real sync would set them), the file in the 28 above.
        let toggles = u32::from_le_bytes(four.try_into().unwrap()) & !0x0F;
        events.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        events.extend(toggles.to_le_bytes());
        count += 1;
    }
    let mut input = count.to_le_bytes().to_vec();
    input.extend([0, 0]);
    input.extend(&events);
    let frame = client_io(share_data(1007, 0x1C, &input), 1003);
    let verdict = filter.from_client(&frame).unwrap();
    assert!(!carries(&verdict, &frame, &events), "the sync events' undefined toggle bits stay on the box");
    assert!(carries(&verdict, &frame, &[0; 12].repeat(1000)), "the events reach the target, their toggles 0");
    // Defined toggles pass as they are: num lock and caps lock.
    let mut sync = 1u16.to_le_bytes().to_vec();
    sync.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x06, 0, 0, 0]);
    let frame = client_io(share_data(1007, 0x1C, &sync), 1003);
    let verdict = filter.from_client(&frame).unwrap();
    assert!(carries(&verdict, &frame, &sync), "{verdict:?}");
    // A key event (scan code 0x1E down) with 12 undefined keyboardFlags bits set.
    let mut key = 1u16.to_le_bytes().to_vec();
    key.extend([0, 0, 0, 0, 0, 0]);
    key.extend(0x0004u16.to_le_bytes());
    key.extend(0x30FFu16.to_le_bytes());
    key.extend(0x001Eu16.to_le_bytes());
    key.extend([0, 0]);
    let frame = client_io(share_data(1007, 0x1C, &key), 1003);
    let verdict = filter.from_client(&frame).unwrap();
    assert!(!carries(&verdict, &frame, &[0xFF, 0x30, 0x1E, 0x00]), "keyboardFlags' undefined bits: {verdict:?}");
    assert!(carries(&verdict, &frame, &[4, 0, 0, 0, 0x1E, 0, 0, 0]), "the key itself, down: {verdict:?}");
    // A release of an extended key (0x8100) keeps its defined bits.
    key[10..12].copy_from_slice(&0x8100u16.to_le_bytes());
    let frame = client_io(share_data(1007, 0x1C, &key), 1003);
    let verdict = filter.from_client(&frame).unwrap();
    assert!(carries(&verdict, &frame, &[4, 0, 0, 0x81, 0x1E, 0, 0, 0]), "{verdict:?}");
    // Fast-path: a key event with eventFlags 0x18 (two undefined bits) reaches the target without
    // them; a release (0x01) passes as it is.
    let fast = [0x04, 0x04, 0x18, 0x1E];
    assert_eq!(
        filter.from_client(&fast).unwrap(),
        Verdict::Replace(vec![0x04, 0x04, 0x00, 0x1E]),
        "fast-path key flags"
    );
    let fast = [0x04, 0x04, 0x01, 0x1E];
    assert_eq!(filter.from_client(&fast).unwrap(), Verdict::Forward, "a fast-path key release");
    // A fast-path synchronize's fifth bit, and a Unicode key's flags but release.
    assert_eq!(
        filter.from_client(&[0x04, 0x03, 0x70]).unwrap(),
        Verdict::Replace(vec![0x04, 0x03, 0x60]),
        "fast-path synchronize flags"
    );
    assert_eq!(
        filter.from_client(&[0x04, 0x05, 0x87, 0x41, 0x00]).unwrap(),
        Verdict::Replace(vec![0x04, 0x05, 0x81, 0x41, 0x00]),
        "fast-path unicode flags"
    );
}

/// Graphics pipeline PDUs of one frame (id `frame`) on a 320x240 output: `surfaces` created
/// (id, width, height), surface `shown` mapped at 0,0 and filled red over the whole output.
fn gfx_red_frame(surfaces: &[(u16, u16, u16)], shown: u16, frame: u32) -> Vec<u8> {
    use ironrdp_egfx::pdu::{
        Color, CreateSurfacePdu, EndFramePdu, GfxPdu, MapSurfaceToOutputPdu, PixelFormat, ResetGraphicsPdu,
        SolidFillPdu, StartFramePdu, Timestamp,
    };
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    let mut pdus = vec![GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 320, height: 240, monitors: Vec::new() })];
    for &(surface_id, width, height) in surfaces {
        pdus.push(GfxPdu::CreateSurface(CreateSurfacePdu {
            surface_id,
            width,
            height,
            pixel_format: PixelFormat::XRgb,
        }));
    }
    pdus.extend([
        GfxPdu::MapSurfaceToOutput(MapSurfaceToOutputPdu { surface_id: shown, output_origin_x: 0, output_origin_y: 0 }),
        GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: frame }),
        GfxPdu::SolidFill(SolidFillPdu {
            surface_id: shown,
            fill_pixel: Color { b: 0, g: 0, r: 255, xa: 0xFF },
            rectangles: vec![ExclusiveRectangle { left: 0, top: 0, right: 320, bottom: 240 }],
        }),
        GfxPdu::EndFrame(EndFramePdu { frame_id: frame }),
    ]);
    pdus.iter().flat_map(|p| encode_vec(p).unwrap()).collect()
}

/// Hole 7: a graphics pipeline surface the recorder will not hold is drawn by the client alone,
/// without a gap. The filter's graphics reader keeps every surface the target creates, of any
/// size, as FreeRDP does (`gfx_draws`), and lets it be mapped and drawn. The recorder's pipeline
/// client (IronRDP's `Compositor::create_surface`) silently skips a surface wider or taller than
/// 16,384 pixels, or one past its 256 MiB budget, while `GraphicsPipelineClient` still lists it:
/// every fill, copy and tile on it is then dropped in silence (`solid_fill` finds no surface), no
/// `on_unhandled_pdu`, no `dropped_updates`, the decoder never stops. FreeRDP allocates the
/// surface (16,400 × 240 is 15 MiB) and shows what of it the output covers. So a target
/// (Windows or xrdp 0.10 patched, or a program holding the pipeline where the target opens none)
/// shows the client whatever it likes while the video keeps the old picture: (a) on one surface
/// 16,400 pixels wide, (b) on a 320x240 surface after four unmapped 4096×4096 ones filled the
/// budget (which also holds 256 MiB of the box's memory a session, for the whole session). Fix
/// shape: the filter refuses a Create Surface the recorder's compositor would not hold (a side
/// over 16,384, or the session's surfaces past the budget) — or the decoder counts a surface the
/// compositor refused as a stop, like a Wire To Surface it could not draw.
#[test]
fn red17r_a_surface_the_recorder_will_not_hold_is_drawn_by_the_client_alone() {
    use super::red17i::{red_share, session, target_chunk};
    // The control: a surface of the output's size, filled red, is red in the video.
    let mut s = session();
    let gfx = u8::try_from(s.gfx).unwrap();
    let message = [vec![0x30, gfx, 0xE0, 0x04], gfx_red_frame(&[(4, 320, 240)], 4, 9)].concat();
    let down = target_chunk(s.drdynvc, message.len(), 3, &message);
    assert_eq!(s.filter.from_target(&down).unwrap(), Verdict::Forward);
    s.decoder.observe_target(&down).unwrap();
    assert!(red_share(&s.decoder) > 0.99, "the control is recorded red");
    for (surfaces, shown) in [
        // (a) one surface wider than the recorder holds.
        (vec![(4, 16_400, 240)], 4),
        // (b) four unmapped 64 MiB surfaces, then the shown one past the budget.
        (vec![(1, 4096, 4096), (2, 4096, 4096), (3, 4096, 4096), (5, 4096, 4096), (4, 320, 240)], 4),
    ] {
        let mut s = session();
        let gfx = u8::try_from(s.gfx).unwrap();
        let message = [vec![0x30, gfx, 0xE0, 0x04], gfx_red_frame(&surfaces, shown, 9)].concat();
        let down = target_chunk(s.drdynvc, message.len(), 3, &message);
        let verdict = s.filter.from_target(&down).unwrap();
        assert!(refused(&verdict), "a surface the recorder would not hold ends the session: {surfaces:?} {verdict:?}");
    }
}

/// Hole 8: surface commands carry a file to the client in fields no one draws. The filter does
/// not walk a fast-path Surface Commands update (`UpdateWalk::fast_path` reads bitmaps and
/// palettes only), and the audit judges only surface bits' codec and size. So: (a) Frame
/// Markers — 4 free bytes of frameId each (8-byte commands: half of every PDU), begin and end
/// alternating, drawing nothing, as many as the target likes (the graphics pipeline's empty frames
/// were closed by red team `h-red17n`; this is the same channel on the surface command path);
/// (b) a Set Surface Bits' TS_COMPRESSED_BITMAP_HEADER_EX (flag 0x01: highUniqueId,
/// lowUniqueId, tmMilliseconds, tmSeconds, 24 bytes IronRDP and FreeRDP read and draw nothing
/// by) and its reserved byte; (c) the X byte of every raw 32 bpp pixel. Here one fast-path PDU
/// carries ~12 KiB in markers and 25 bytes beside a 1x1 raw pixel the recorder draws, without
/// a gap. Fix shape: walk Surface Commands in the filter — frame markers paired, their ids in
/// sequence (or re-written by the box), no header-ex, reserved zero, the X byte zeroed.
///
/// Closed: the filter walks Surface Commands (across fragments) and re-encodes them in place:
/// every Frame Marker's frameId is the box's (a frame's end pairs with its begin; the client's
/// Frame Acknowledge reaches the target with the target's id, and one for a frame the box never
/// numbered is dropped), the header-ex's 24 bytes and the reserved byte leave as zeros, the
/// flags but the header-ex bit too, and a raw 32 bpp pixel's X byte. **Still open**: how many
/// frames, begun and ended, each drawing nothing (their count and timing).
#[test]
fn red17r_surface_commands_carry_a_file_to_the_client_in_fields_no_one_draws() {
    let (mut filter, mut decoder, _) = replayed();
    let payload = file(12_000);
    let marker = |action: u16, id: &[u8]| [&0x0004u16.to_le_bytes()[..], &action.to_le_bytes(), id].concat();
    // Begin and end alternating, each id the file's: an end that does not pair ends the session.
    let mut commands = Vec::new();
    for (i, id) in payload.chunks(4).enumerate() {
        commands.extend(marker(u16::try_from(i % 2).unwrap(), id));
    }
    let verdict = filter.from_target(&fast_path_update(0x04, &commands)).unwrap();
    assert!(refused(&verdict), "ends that do not pair with their begins: {verdict:?}");
    // Paired, each frame's id the file's: they reach the client numbered by the box.
    let (mut filter, mut decoder2, _) = replayed();
    std::mem::swap(&mut decoder, &mut decoder2);
    let mut commands = Vec::new();
    let mut numbered = Vec::new();
    for (i, id) in payload[..4000].chunks(4).enumerate() {
        commands.extend(marker(0, id));
        commands.extend(marker(1, id));
        let box_id = u32::try_from(i).unwrap().to_le_bytes();
        numbered.extend(marker(0, &box_id));
        numbered.extend(marker(1, &box_id));
    }
    let markers = payload[..4000].to_vec();
    // A raw 1x1 pixel at (30, 30), green, with the header-ex and the reserved byte the file's.
    let extra = file(25);
    commands.extend(0x0001u16.to_le_bytes());
    for v in [30u16, 30, 31, 31] {
        commands.extend(v.to_le_bytes());
    }
    commands.extend([32, 0x01, extra[0], 0x00]);
    commands.extend(1u16.to_le_bytes());
    commands.extend(1u16.to_le_bytes());
    commands.extend(4u32.to_le_bytes());
    commands.extend(&extra[1..25]);
    commands.extend([0x00, 0xFF, 0x00, 0x5A]);
    let out = passes_unstated(&mut filter, &mut decoder, &fast_path_update(0x04, &commands));
    assert!(!holds(&out, &markers[..8]) && !holds(&out, &markers[4000 - 8..]), "no frame marker's id");
    assert!(holds(&out, &numbered), "the frames as the box numbers them");
    assert!(!holds(&out, &extra[1..25]) && !holds(&out, &[32, 0x01, extra[0]]), "header-ex and reserved byte");
    let mut bits = vec![32, 0x01, 0x00, 0x00, 1, 0, 1, 0, 4, 0, 0, 0];
    bits.extend([0; 24]);
    bits.extend([0x00, 0xFF, 0x00, 0x00]);
    assert!(holds(&out, &bits), "the pixel as drawn, its X byte and header-ex zero");
    assert_eq!(pixel(&decoder, 30, 30), [0x00, 0xFF, 0x00], "the recorder drew the pixel, no gap stated");
    // The client acknowledges frame 999 (the box's id): the target hears of its own.
    let io = filter.io_channel.expect("connected");
    let frame = client_io(share_data(1007, 0x38, &999u32.to_le_bytes()), io);
    let verdict = filter.from_client(&frame).unwrap();
    let own = [&[0x38, 0, 0, 0][..], &payload[3996..4000]].concat();
    assert!(carries(&verdict, &frame, &own), "{verdict:?}");
    // A frame the box never numbered: the acknowledgement stays on the box.
    let frame = client_io(share_data(1007, 0x38, &0x0BAD_F00Du32.to_le_bytes()), io);
    assert_eq!(filter.from_client(&frame).unwrap(), Verdict::Drop, "an unknown frame's acknowledgement");
}

/// Hole 9: a 32 bpp pointer's alpha byte carries ~7.6 bits a pixel the video cannot show.
/// `pointer::masks` keeps a pixel's colour only as finely as the video draws it (by
/// `min(alpha, POINTER_MAX_ALPHA)`, red team `h-red17q`) but leaves the alpha byte itself as
/// sent (only under 16 is it zeroed), while the recorder caps every alpha at 64
/// (`decode::Cursor::new`): alphas 64 to 255 — 192 values — draw the same video and cross
/// whole to the client. With a black picture (colour 0 at any alpha, so no colour rounding) a
/// program of the session (an X ARGB cursor; Windows' `CreateIconIndirect`) carries 7.58 bits a
/// pixel: 8.7 KB a 96x96 New Pointer, 140 KB a 384x384 Large Pointer, as often as it sets a
/// cursor, on any grant. The client does show it (a darker or lighter shadow), the video does
/// not: the same class as the colour bits `h-red17q` closed, 4 times their capacity. (The
/// "by design" note on the pointer names fine colour differences; this is the whole top
/// three-quarters of opacity.) Fix shape: keep alpha only as finely as the video draws it too
/// — at or above POINTER_MAX_ALPHA one value (255, or a few levels) — or record the pointer
/// losslessly beside the video.
#[test]
fn red17r_a_pointers_alpha_above_what_the_video_draws_carries_a_file_to_the_client() {
    use super::red17p::{client, mouse, new_pointer, target};
    let side = 64usize;
    let payload = file(side * side);
    // Black pixels whose alpha is 64 + (byte mod 192): the file, base 192.
    let alphas: Vec<u8> = payload.iter().map(|b| 64 + b % 192).collect();
    let xor: Vec<u8> = alphas.iter().flat_map(|&a| [0, 0, 0, a]).collect();
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    let out = target(&mut filter, &mut decoder, &fast_path_update(0x0B, &new_pointer(32, (0, 0), 64, &xor, &[])));
    assert!(!holds(&out, &xor[..64 * 4]), "the alphas do not reach the client as sent");
    let opaque: Vec<u8> = [0, 0, 0, 0xFF].repeat(side * side);
    assert!(holds(&out, &opaque), "every alpha the video draws alike reaches the client as one: opaque");
    let recorded = decoder.screen().unwrap().pointer.expect("shown").rgba.to_vec();
    // The same picture with every alpha 255: the video draws exactly the same.
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    target(&mut filter, &mut decoder, &fast_path_update(0x0B, &new_pointer(32, (0, 0), 64, &opaque, &[])));
    assert_eq!(
        decoder.screen().unwrap().pointer.expect("shown").rgba,
        &recorded[..],
        "the video cannot tell them apart"
    );
}

/// Hole 10: a graphics pipeline Reset Graphics makes the recorder hold a desktop past the
/// decoder's own bound. `PassiveDecoder::demand_active` refuses a desktop wider or taller than
/// 8,192 or of more than 7680 × 4320 pixels (`DecodeError::DesktopSize`), but the graphics
/// pipeline resizes the recorder's image inside IronRDP's stage (`composite_graphics_pipeline`:
/// `reset_preserving_pointer`, zero-filled) to whatever the Reset Graphics says within the
/// compositor's 256 MiB, and neither the filter (IronRDP's decode accepts up to 32,766) nor
/// the decoder looks: 8,192 × 8,192 is a 256 MiB image, twice the bound, and the session's
/// surfaces and cache may hold another 256 MiB in the compositor (hole 7) — about half a GiB of
/// the box a session, for a target (or a program holding the pipeline) that asks. The
/// video then scales 67 Mpixel frames into the first size. Fix shape: the filter refuses a
/// Reset Graphics outside the decoder's desktop bound (and, with hole 7, bounds the surfaces'
/// and cache's bytes well under the compositor's budget).
#[test]
fn red17r_a_graphics_reset_makes_the_recorder_hold_a_desktop_past_its_bound() {
    use super::red17i::{session, target_chunk};
    use ironrdp_egfx::pdu::{GfxPdu, ResetGraphicsPdu};
    let mut s = session();
    let gfx = u8::try_from(s.gfx).unwrap();
    let reset =
        encode_vec(&GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 8192, height: 8192, monitors: Vec::new() }))
            .unwrap();
    let message = [vec![0x30, gfx, 0xE0, 0x04], reset].concat();
    let down = target_chunk(s.drdynvc, message.len(), 3, &message);
    let verdict = s.filter.from_target(&down).unwrap();
    assert!(refused(&verdict), "an output past the decoder's bound ends the session: {verdict:?}");
    // Within the bound (8K UHD), the same reset passes and the recorder holds it.
    let mut s = session();
    let reset =
        encode_vec(&GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 7680, height: 4320, monitors: Vec::new() }))
            .unwrap();
    let message = [vec![0x30, gfx, 0xE0, 0x04], reset].concat();
    let down = target_chunk(s.drdynvc, message.len(), 3, &message);
    assert_eq!(s.filter.from_target(&down).unwrap(), Verdict::Forward, "8K UHD passes");
}

/// Hole 11: before its Demand Active the target sends the client whatever it likes, as much as
/// it likes. `target_io` forwards every I/O channel message that starts with a basic security
/// header (flagsHi 0) before activation, unread, unless it says redirection or multitransport:
/// licence PDUs (LICENSE_PKT) of any length and count, or a header with no flag at all and any
/// body. The client's licence PDUs are bounded (4 of 8 KiB, red team `h-red17m`); the target's
/// are not. The decoder is still connecting and records nothing of them. So a hostile target
/// (its RDP server patched) streams a file to a patched client between the licensing and the
/// Demand Active — the recording shows a session that starts late, nothing more. Here 64 PDUs
/// of 16 KiB (1 MiB) pass after the capture's own licensing, then the session goes on as
/// captured. Fix shape: the target's licence PDUs read exactly and bounded like the client's
/// (a Licence Request, Platform Challenge, New or Upgrade Licence and Error Alert, each once
/// or twice, their blobs at most a few KiB), anything else before activation refused.
#[test]
fn red17r_before_its_demand_active_the_target_sends_the_client_as_much_as_it_likes() {
    use crate::decode::capture_records;
    let mut filter = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    let mut decoder = PassiveDecoder::new();
    let mut injected = 0usize;
    let payload = file(16 * 1024);
    for (tag, frame) in capture_records(include_bytes!("testdata/shadow_bitmap.cap")) {
        if tag != b'C' && tag != b'T' {
            continue;
        }
        let is_demand = tag == b'T'
            && ironrdp_pdu::mcs::decode_send_data_indication(frame).is_ok_and(|ctx| {
                matches!(
                    decode::<ShareControlHeader>(ctx.user_data).map(|h| h.share_control_pdu),
                    Ok(ShareControlPdu::ServerDemandActive(_))
                )
            });
        if is_demand && injected == 0 {
            let io = filter.io_channel.expect("the connect response passed");
            for (i, flags) in (0..64).map(|i| (i, if i % 2 == 0 { 0x0080u16 } else { 0x0000 })) {
                let mut pdu = flags.to_le_bytes().to_vec();
                pdu.extend([0, 0]);
                pdu.extend(&payload);
                let frame = target_io(pdu, io);
                let verdict = filter.from_target(&frame).unwrap();
                assert!(refused(&verdict), "pdu {i} (flags {flags:#x}): {verdict:?}");
                injected += payload.len();
            }
        }
        let verdict = if tag == b'C' { filter.from_client(frame) } else { filter.from_target(frame) }.unwrap();
        let out = match verdict {
            Verdict::Forward => frame.to_vec(),
            Verdict::Replace(out) => out,
            Verdict::Drop => continue,
            Verdict::Refuse(why) => panic!("the capture was refused after the injection: {why}"),
        };
        if tag == b'C' {
            decoder.observe_client(&out).unwrap();
        } else {
            decoder.observe_target(&out).unwrap();
        }
    }
    assert_eq!(injected, 1 << 20, "1 MiB was tried before the demand active, none of it passed");
    // Licence PDUs read exactly, their preamble's wMsgSize the rest: only so many pass, so long.
    let fresh = || {
        let mut filter = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
        for (tag, frame) in capture_records(include_bytes!("testdata/shadow_bitmap.cap")) {
            if filter.io_channel.is_some() && filter.licence_pdus.1 > 0 {
                break;
            }
            match tag {
                b'C' => drop(filter.from_client(frame).unwrap()),
                b'T' => drop(filter.from_target(frame).unwrap()),
                _ => {}
            }
        }
        filter
    };
    let licence = |filter: &Filter, size: usize| {
        let mut pdu = vec![0x80, 0, 0, 0, 0xFF, 0x03];
        pdu.extend(u16::try_from(4 + size).unwrap().to_le_bytes());
        pdu.extend(&payload[..size]);
        target_io(pdu, filter.io_channel.unwrap())
    };
    let mut filter = fresh();
    assert_eq!(filter.licence_pdus.1, 1, "the capture's own licensing passed");
    for _ in 0..3 {
        let frame = licence(&filter, 1024);
        assert_eq!(filter.from_target(&frame).unwrap(), Verdict::Forward, "a licence pdu passes");
    }
    let frame = licence(&filter, 1024);
    assert!(refused(&filter.from_target(&frame).unwrap()), "past the count of licence pdus");
    let mut filter = fresh();
    let frame = licence(&filter, 10 * 1024);
    assert!(refused(&filter.from_target(&frame).unwrap()), "past a licence pdu's size");
    let mut filter = fresh();
    let mut wrong = licence(&filter, 1024);
    let at = wrong.len() - 1024 - 2;
    wrong[at] ^= 1;
    assert!(refused(&filter.from_target(&wrong).unwrap()), "a wMsgSize not the rest");
    assert!(decoder.screen().is_some() && !decoder.is_stopped(), "and the session went on, recorded as usual");
}

/// Hole 12: after a Reset Graphics the client keeps its surfaces and the recorder does not, and
/// the Reset Graphics itself carries 320 bytes of the target's. FreeRDP's `gdi_ResetGraphics`
/// (libfreerdp/gdi/gfx.c) keeps every surface — their pixels set to 0xFF, their output mapping
/// kept — and draws on them afterwards; IronRDP's pipeline client (the recorder's) drops every
/// surface on a reset (`handle_reset_graphics`: `surfaces.clear()`, `compositor.reset`), so a
/// later Solid Fill, Surface To Surface or Cache To Surface on an old surface is skipped in
/// silence (no unhandled PDU, no dropped update). The filter's reader keeps the surfaces too
/// (`gfx_draws` does nothing on a reset), so it passes such a frame as drawing. A target (or a
/// program holding the pipeline) sends a Reset Graphics of the same size and goes on drawing on
/// the surface the client still shows: the client sees it, the video shows a blank output.
/// Separately, a Reset Graphics lists up to 16 monitors of 20 bytes (four i32 and flags, which
/// IronRDP keeps whole: `from_bits_retain`), all read and written back byte for byte, never
/// drawn: 320 free bytes a PDU, as many PDUs as the target likes. Fix shape: on a Reset Graphics
/// the filter forgets every surface (so drawing on an old one ends the session, as FreeRDP's
/// reading and the recorder's must agree), its size within the decoder's bound, its monitors
/// one desktop of that size and the flags primary only (or the monitor list re-written by the
/// box).
#[test]
fn red17r_after_a_graphics_reset_the_client_draws_on_surfaces_the_recorder_dropped() {
    use super::red17i::{red_share, session, target_chunk};
    use ironrdp_egfx::pdu::{Color, EndFramePdu, GfxPdu, ResetGraphicsPdu, SolidFillPdu, StartFramePdu, Timestamp};
    use ironrdp_pdu::gcc::{Monitor, MonitorFlags};
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    let mut s = session();
    let gfx = u8::try_from(s.gfx).unwrap();
    let judge = |s: &mut super::red17i::Session, pdus: Vec<u8>| {
        let message = [vec![0x30, gfx, 0xE0, 0x04], pdus].concat();
        let down = target_chunk(s.drdynvc, message.len(), 3, &message);
        let verdict = s.filter.from_target(&down).unwrap();
        (down, verdict)
    };
    let send = |s: &mut super::red17i::Session, pdus: Vec<u8>| {
        let (down, verdict) = judge(s, pdus);
        assert_eq!(verdict, Verdict::Forward);
        s.decoder.observe_target(&down).expect("no gap, no error");
        down
    };
    // Surface 4, the output's size, mapped and drawn red: recorded red.
    send(&mut s, gfx_red_frame(&[(4, 320, 240)], 4, 9));
    assert!(red_share(&s.decoder) > 0.99);
    // A Reset Graphics of the same size whose 16 monitors are the file's 320 bytes.
    let payload = file(16 * 20);
    let monitors = payload
        .chunks(20)
        .map(|m| {
            let i = |at: usize| i32::from_le_bytes(m[at..at + 4].try_into().unwrap());
            Monitor {
                left: i(0),
                top: i(4),
                right: i(8),
                bottom: i(12),
                flags: MonitorFlags::from_bits_retain(u32::from_le_bytes(m[16..20].try_into().unwrap())),
            }
        })
        .collect();
    let reset = encode_vec(&GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 320, height: 240, monitors })).unwrap();
    let (_, verdict) = judge(&mut s, reset);
    assert!(refused(&verdict), "a monitor list of the target's own ends the session: {verdict:?}");
    // The canonical ones pass: no monitor, or the one desktop of the output's size, primary.
    let mut s = session();
    send(&mut s, gfx_red_frame(&[(4, 320, 240)], 4, 9));
    let one = Monitor { left: 0, top: 0, right: 319, bottom: 239, flags: MonitorFlags::PRIMARY };
    send(
        &mut s,
        encode_vec(&GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 320, height: 240, monitors: vec![one] })).unwrap(),
    );
    send(
        &mut s,
        encode_vec(&GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 320, height: 240, monitors: Vec::new() })).unwrap(),
    );
    // Then a frame drawing red on surface 4, which the client still has and shows.
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    let red = [
        GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: 10 }),
        GfxPdu::SolidFill(SolidFillPdu {
            surface_id: 4,
            fill_pixel: Color { b: 0, g: 0, r: 255, xa: 0xFF },
            rectangles: vec![ExclusiveRectangle { left: 0, top: 0, right: 320, bottom: 240 }],
        }),
        GfxPdu::EndFrame(EndFramePdu { frame_id: 10 }),
    ]
    .iter()
    .flat_map(|p| encode_vec(p).unwrap())
    .collect();
    let (_, verdict) = judge(&mut s, red);
    assert!(refused(&verdict), "drawing on a surface the reset dropped ends the session: {verdict:?}");
}

/// Hole 13: the client sends Confirm Actives nobody asked for, as often as it likes, and each
/// carries what a Confirm Active may (ARCHITECTURE's residue: a known set's fields and bytes
/// within its length — bounded, the residue assumes, by one Confirm Active an activation).
/// `client_io` re-encodes every Confirm Active at any time after activation: nothing ties it
/// to a Demand Active, nothing counts them. Here 16 Confirm Actives follow one activation, each
/// a General capability set whose length holds 16 KiB of a file, and all 256 KiB reach the
/// target's RDP server (xrdp's `xrdp_caps_process_confirm_active` reads every one mid-session).
/// Fix shape: one Confirm Active in answer to each Demand Active, any other ending the session;
/// and a known set's length exactly what its type defines (the trim already knows them).
#[test]
fn red17r_confirm_actives_nobody_asked_for_carry_a_file_to_the_target() {
    let mut filter = super::red17i::grant_without_anything();
    filter.share_id = Some(0x0001_03EA);
    let payload = file(16 * 16 * 1024);
    for chunk in payload.chunks(16 * 1024) {
        // TS_GENERAL_CAPABILITYSET's 20 bytes of fields (Windows NT, protocol 0x200, no
        // compression, extraFlags as FreeRDP sends), then the file within its length.
        let mut general = vec![1, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0x1D, 0x04, 0, 0, 0, 0, 0, 0, 1, 1];
        general.extend(chunk);
        let frame = client_io(confirm_active(&[(0x01, general)]), 1003);
        let verdict = filter.from_client(&frame).unwrap();
        assert!(refused(&verdict), "an unasked-for confirm active ends the session: {verdict:?}");
        assert!(!carries(&verdict, &frame, chunk));
    }
    // The one answering a Demand Active passes (re-encoded).
    let (mut filter, _, demand_active) = replayed();
    let io = filter.io_channel.expect("connected");
    assert!(matches!(filter.from_target(&demand_active).unwrap(), Verdict::Forward | Verdict::Replace(_)));
    let general = vec![1, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0x1D, 0x04, 0, 0, 0, 0, 0, 0, 1, 1];
    let frame = client_io(confirm_active(&[(0x01, general.clone())]), io);
    assert!(matches!(filter.from_client(&frame).unwrap(), Verdict::Forward | Verdict::Replace(_)));
    // A second answer to the same Demand Active ends the session.
    assert!(refused(&filter.from_client(&frame).unwrap()), "a second confirm active");
}

/// `frame` (a TPKT / X.224 Data / MCS Send Data PDU) with the bytes every peer skips set to
/// `bytes`: the TPKT's reserved byte, the X.224 EOT byte, the MCS choice's two low bits and the
/// dataPriority/segmentation byte.
fn reframed(frame: &[u8], bytes: [u8; 4]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[1] = bytes[0];
    out[6] = bytes[1];
    out[7] |= bytes[2] & 0x03;
    // Choice, initiator (2, PER), channel id (2): the priority byte follows.
    out[12] = bytes[3];
    out
}

/// Hole 14: the framing of every PDU passed as it came carries bytes both ways. When the filter
/// passes a slow-path PDU unchanged (`Verdict::Forward`: every static and dynamic channel
/// message, every Share Data PDU already as IronRDP writes it) it passes the frame as the sender
/// wrote it, and four places of that frame are read by no peer: the TPKT header's reserved byte
/// (IronRDP `read_padding!`, FreeRDP and xrdp skip it), the X.224 Data TPDU's EOT byte (the
/// same), the low two bits of the MCS PDU's choice byte (IronRDP reads `choice >> 2`) and the
/// Send Data dataPriority/segmentation byte (skipped): ~26 free bits a PDU, either way. A
/// fast-path output PDU's header keeps 4 reserved bits too (`FastPathWalk::judge` checks the
/// action and the flags only). So a hostile target modulates ~3 bytes onto every PDU of an
/// ordinary session — screen updates included, nothing unusual on the wire to a glance — and a
/// patched client the same onto every channel PDU it sends; thousands a minute in a graphics
/// session. Inside, a dynamic channel Data PDU on a read channel passes as sent as well: its
/// Sp bits and the width of its channel id are the sender's. Fix shape: the relay writes every slow-path frame's TPKT, X.224 and MCS headers
/// itself (re-encode on Forward, as `Replace` does) and zeroes the fast-path output header's
/// reserved bits — or refuses frames whose skipped bytes are not the canonical 0, 0x80, 0, 0x70.
///
/// Closed for the framing: every slow-path frame that passes leaves with the TPKT, X.224 and
/// MCS headers IronRDP writes for what was read (re-encoded, not refused: peers may set those
/// bytes), and every fast-path output PDU with the box's header (reserved bits zero, the length
/// in two bytes), and a read dynamic channel's Data PDU whole in one chunk with its header as
/// FreeRDP writes it (Sp 0, the shortest channel id). **Still open**: the header of a Data PDU
/// over several chunks, or of a Data First (the width of its length), as sent.
#[test]
fn red17r_the_framing_of_every_pdu_passed_as_sent_carries_bytes_both_ways() {
    let mut filter = super::red17i::grant_without_anything();
    filter.share_id = Some(0x0001_03EA);
    let secret = [0xA5, 0x5A, 0x03, 0xC3];
    // From the target: a Synchronize PDU already as IronRDP writes it passes as sent.
    // (IronRDP writes a Share Data header's uncompressedLength as the body's length.)
    let canonical = |source: u16, body: &[u8]| {
        let mut pdu = share_data(source, 0x1F, body);
        pdu[12..14].copy_from_slice(&u16::try_from(body.len()).unwrap().to_le_bytes());
        pdu
    };
    let sync = target_io(canonical(1002, &[1, 0, 0xEF, 0x03]), 1003);
    let frame = reframed(&sync, secret);
    assert_eq!(filter.from_target(&frame).unwrap(), Verdict::Replace(sync.clone()), "the target's frame, reframed");
    // Framed as IronRDP frames it, it passes as sent.
    let mut filter = super::red17i::grant_without_anything();
    filter.share_id = Some(0x0001_03EA);
    assert_eq!(filter.from_target(&sync).unwrap(), Verdict::Forward, "the canonical frame");
    // From the client: a Synchronize PDU as IronRDP writes it.
    let sync = client_io(canonical(1007, &[1, 0, 0xEA, 0x03]), 1003);
    let frame = reframed(&sync, secret);
    assert_eq!(filter.from_client(&frame).unwrap(), Verdict::Replace(sync.clone()), "the client's frame, reframed");
    // A long PER length for a short user data (two bytes where one holds it): the shortest.
    let mut long = sync[..13].to_vec();
    long.extend([0x80, sync[13]]);
    long.extend(&sync[14..]);
    long[3] += 1;
    let mut filter = super::red17i::grant_without_anything();
    filter.share_id = Some(0x0001_03EA);
    assert_eq!(filter.from_client(&long).unwrap(), Verdict::Replace(sync.clone()), "a long per length");
    let mut filter = super::red17i::grant_without_anything();
    filter.share_id = Some(0x0001_03EA);
    assert_eq!(filter.from_client(&sync).unwrap(), Verdict::Forward, "the canonical frame");
    // A fast-path output PDU (a synchronize update of no body) with its reserved bits set leaves
    // without them; as the box writes one, it passes.
    let canonical_fast = fast_path_update(0x03, &[]);
    let mut fast = canonical_fast.clone();
    fast[0] |= 0x3C;
    assert_eq!(filter.from_target(&fast).unwrap(), Verdict::Replace(canonical_fast.clone()), "reserved bits");
    assert_eq!(filter.from_target(&canonical_fast).unwrap(), Verdict::Forward);
    // A dynamic channel Data PDU on a read channel passes as sent too: its header's Sp bits
    // (unused on Data) and the width it spells the channel id in (4 bytes for id 3) are the
    // sender's, 3 to 4 free bits a DVC PDU (here the target's Caps Confirm on the pipeline).
    let mut gfx = super::red17n::opened();
    let dvc = [&[0x3E, 3, 0, 0, 0, 0xE0, 0x04][..], &super::red17n::confirm()].concat();
    let frame = super::red17i::target_send(super::red17i::svc(&dvc));
    let canonical = [&[0x30, 3, 0xE0, 0x04][..], &super::red17n::confirm()].concat();
    let canonical = super::red17i::target_send(super::red17i::svc(&canonical));
    assert_eq!(gfx.from_target(&frame).unwrap(), Verdict::Replace(canonical.clone()), "a DVC header's free bits");
    let mut gfx = super::red17n::opened();
    assert_eq!(gfx.from_target(&canonical).unwrap(), Verdict::Forward, "the header as FreeRDP writes it");
}

/// Hole 15: an uncompressed Wire To Surface 1 the client fails on is drawn by the recorder, and
/// one longer than its rectangle carries a file. The filter's reader checks a Wire To Surface
/// 1's surface and rectangle (`gfx_draws`), not its data's length. FreeRDP 3's
/// `gdi_SurfaceCommand_Uncompressed` refuses data shorter than width × height × 4 ("Not enough
/// data"), and `rdpgfx_recv_pdu`'s failure stops its reading of the whole message (FreeRDP
/// 2.11 reads past the data instead); IronRDP's pipeline client (the recorder's) copies the
/// rows the data holds and goes on, without a dropped update. So a target (or a program
/// holding the pipeline) sends [short uncompressed tile][fill][End Frame]: the recording shows
/// the fill, the client never did — evidence of a screen the user was not shown (a warning
/// they "saw", a prompt they "answered"). Longer data passes too, and the bytes past the
/// rectangle, like every pixel's X byte, are drawn by no one: a covert channel like hole 3's.
/// Fix shape: an uncompressed Wire To Surface 1 exactly width × height × 4 bytes (and the X
/// byte zeroed, or the surface format's alpha kept), as FreeRDP 3 and IronRDP both read it.
#[test]
fn red17r_a_short_uncompressed_tile_makes_the_recording_show_what_the_client_never_drew() {
    use super::red17i::{red_share, session, target_chunk};
    use ironrdp_egfx::pdu::{
        Codec1Type, Color, CreateSurfacePdu, EndFramePdu, GfxPdu, MapSurfaceToOutputPdu, PixelFormat, ResetGraphicsPdu,
        SolidFillPdu, StartFramePdu, Timestamp, WireToSurface1Pdu,
    };
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    let message = |bitmap_data: Vec<u8>| -> Vec<u8> {
        [
            GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 320, height: 240, monitors: Vec::new() }),
            GfxPdu::CreateSurface(CreateSurfacePdu {
                surface_id: 4,
                width: 320,
                height: 240,
                pixel_format: PixelFormat::XRgb,
            }),
            GfxPdu::MapSurfaceToOutput(MapSurfaceToOutputPdu { surface_id: 4, output_origin_x: 0, output_origin_y: 0 }),
            GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: 9 }),
            GfxPdu::WireToSurface1(WireToSurface1Pdu {
                surface_id: 4,
                codec_id: Codec1Type::Uncompressed,
                pixel_format: PixelFormat::XRgb,
                destination_rectangle: ExclusiveRectangle { left: 0, top: 0, right: 64, bottom: 64 },
                bitmap_data,
            }),
            GfxPdu::SolidFill(SolidFillPdu {
                surface_id: 4,
                fill_pixel: Color { b: 0, g: 0, r: 255, xa: 0xFF },
                rectangles: vec![ExclusiveRectangle { left: 0, top: 0, right: 320, bottom: 240 }],
            }),
            GfxPdu::EndFrame(EndFramePdu { frame_id: 9 }),
        ]
        .iter()
        .flat_map(|p| encode_vec(p).unwrap())
        .collect()
    };
    // Short: one pixel of a 64x64 tile. FreeRDP 3 stops at it; the recorder paints the fill.
    let mut s = session();
    let gfx = u8::try_from(s.gfx).unwrap();
    let dvc = [vec![0x30, gfx, 0xE0, 0x04], message(vec![0, 0, 0, 0])].concat();
    let down = target_chunk(s.drdynvc, dvc.len(), 3, &dvc);
    let verdict = s.filter.from_target(&down).unwrap();
    assert!(refused(&verdict), "a short tile ends the session: {verdict:?}");
    // Long: the tile's pixels, then a file.
    let mut s = session();
    let payload = file(4096);
    let mut data = [0x40, 0x40, 0x40, 0x00].repeat(64 * 64);
    data.extend(&payload);
    let dvc = [vec![0x30, gfx, 0xE0, 0x04], message(data)].concat();
    let down = target_chunk(s.drdynvc, dvc.len(), 3, &dvc);
    assert!(holds(&down, &payload));
    let verdict = s.filter.from_target(&down).unwrap();
    assert!(refused(&verdict), "a long tile ends the session: {verdict:?}");
    // Exactly the rectangle's pixels: passes, and the recording shows the fill as the client.
    let mut s = session();
    let data = [0x40, 0x40, 0x40, 0x00].repeat(64 * 64);
    let dvc = [vec![0x30, gfx, 0xE0, 0x04], message(data)].concat();
    let down = target_chunk(s.drdynvc, dvc.len(), 3, &dvc);
    assert_eq!(s.filter.from_target(&down).unwrap(), Verdict::Forward);
    s.decoder.observe_target(&down).expect("no gap, no error");
    assert!(!s.decoder.is_stopped() && red_share(&s.decoder) > 0.99, "the recording shows the fill");
}
