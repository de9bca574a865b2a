//! Red team `h-red17q`'s attacks on red team `h-red17p`'s fixes of the pointer (issue 17):
//! `FastPathWalk::note_pointer` (positions of a hidden pointer left out, Cached Pointers the
//! recorder lacks sent as the picture) and [`crate::pointer`]'s colours kept only as finely as
//! their alpha shows them. Each test passes while its hole is open (asserting the attacker's
//! success).
//!
//! The parties are those of `h-red17p`: an insider's client (a patched FreeRDP) and, on the
//! target, a program of the session that sets the session's cursor as often as it likes.

use super::red17m::{file, replayed_with_demand_active as replayed};
use super::red17p::{client, fast_path_update, mouse, new_pointer, positions_frame, target};
use super::*;

/// Hole 1 (closed: Default, and no picture yet, count as no pointer shown; their positions are
/// left out): positions of a Default pointer crossed drawn by no one. `note_pointer` leaves out the
/// Pointer Position updates of a hidden pointer only after a Null Pointer; a Default Pointer
/// sets `hidden` back to false. But the recorder (decode.rs) treats `PointerDefault` as it does
/// `PointerHidden` (`cursor_visible = false`): the video shows no pointer at all, while FreeRDP
/// shows its system arrow and warps it to every position. So a program of the session sends a
/// Default Pointer once, then streams positions the insider's client reads and the video never
/// shows (the same holds from the session's start, before any picture: `hidden` starts false,
/// the recorder's cursor starts absent). Capacity: 4 bytes a 7-byte update, ~18 KB per 32 KB
/// fast-path PDU, at the link's rate. Fix direction: treat Default as hidden in `note_pointer`
/// (and no picture yet as hidden) — or draw the system arrow in the video — and hold positions
/// to what the video shows (the latest, once a frame).
#[test]
fn red17q_positions_of_a_default_pointer_carry_four_bytes_each_the_video_never_shows() {
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    // Before any picture: the video shows no pointer, and no position crosses.
    let first = fast_path_update(0x08, &[1, 2, 3, 4]);
    assert_eq!(filter.from_target(&first).unwrap(), Verdict::Drop, "a position before any picture");
    let shown: Vec<u8> = [0xFF; 4].repeat(32 * 32);
    target(&mut filter, &mut decoder, &fast_path_update(0x0B, &new_pointer(32, (0, 0), 32, &shown, &[0; 4 * 32])));
    assert!(decoder.screen().unwrap().pointer.is_some(), "shown");
    // A shown pointer's position crosses (the video draws it there).
    assert_eq!(filter.from_target(&first).unwrap(), Verdict::Forward, "a shown pointer's position");
    // The Default Pointer: no picture in the video, and its positions are left out.
    target(&mut filter, &mut decoder, &fast_path_update(0x06, &[]));
    assert!(decoder.screen().unwrap().pointer.is_none(), "the video shows no pointer");
    let payload = file(4 * 4000);
    let frame = positions_frame(&payload);
    assert_eq!(filter.from_target(&frame).unwrap(), Verdict::Drop, "positions of a default pointer");
}

/// Hole 2 (closed: channels are kept as finely as the video draws them, by
/// `min(alpha, POINTER_MAX_ALPHA)`, 24 bpp too): `visible_colour` kept a channel as finely as the *client's* blend shows it (by the
/// pixel's own alpha), not as the *video* shows it: the recorder draws a pointer at alpha
/// `POINTER_MAX_ALPHA` (64) at most, so an opaque pixel keeps all 256 levels a channel for the
/// client while the video moves by a quarter of a level per level. The two low bits of every
/// channel of an opaque pixel move the video by at most 1 level (lost to H.264, the argument
/// that closed `h-red17p`'s hole 2), by `FAINTEST`'s own standard (a pixel moving the screen by
/// up to 15 levels is invisible) even ~5 bits a channel. Capacity (2 bits a channel): 6 bits a
/// pixel, 6.9 KB per 96x96 New Pointer, 108 KB per 384x384 Large, a picture as often as the
/// program likes; 24 bpp pointers alike. Fix direction: quantise by the recorder's alpha,
/// `visible_colour(c, min(alpha, POINTER_MAX_ALPHA))` (≈65 levels), or coarser to what survives
/// the encoder.
#[test]
fn red17q_opaque_pointer_pixels_keep_two_bits_a_channel_the_video_cannot_show() {
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    let payload = file(64 * 64 * 3);
    let bits: Vec<u8> = payload.iter().map(|b| b & 3).collect();
    let picture: Vec<u8> = bits.chunks(3).flat_map(|c| [0x80 | c[0], 0x80 | c[1], 0x80 | c[2], 0xFF]).collect();
    let frame = fast_path_update(0x0B, &new_pointer(32, (0, 0), 64, &picture, &[0; 8 * 64]));
    let out = target(&mut filter, &mut decoder, &frame);
    let got: Vec<u8> = out[6 + 16..6 + 16 + picture.len()].chunks(4).flat_map(|p| p[..3].to_vec()).collect();
    // Four levels a channel sent, at most the two the video draws apart reach the client.
    let levels = |v: &[u8]| v.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(levels(&got) <= 2, "the low bits reach the client: {} levels", levels(&got));
    assert!(decoder.screen().unwrap().pointer.is_some(), "drawn");
    // A 24 bpp pointer (opaque: drawn at alpha 64 too) alike.
    let colours: Vec<u8> = bits.iter().map(|b| 0x80 | b).collect();
    let frame = fast_path_update(0x0B, &new_pointer(24, (0, 0), 64, &colours, &[0; 8 * 64]));
    let out = target(&mut filter, &mut decoder, &frame);
    assert!(levels(&out[6 + 16..6 + 16 + colours.len()]) <= 2, "24 bpp low bits cross");
}

/// A Large Pointer's body (fast-path 0xC): 32 bpp, `side` x `side`, no AND mask.
fn large_pointer(index: u16, side: u16, xor: &[u8]) -> Vec<u8> {
    let mut body = 32u16.to_le_bytes().to_vec();
    body.extend(index.to_le_bytes());
    body.extend([0, 0, 0, 0]);
    body.extend(side.to_le_bytes());
    body.extend(side.to_le_bytes());
    body.extend(0u32.to_le_bytes());
    body.extend(u32::try_from(xor.len()).unwrap().to_le_bytes());
    body.extend(xor);
    body
}

/// Sends one pointer update of `code` cut in fragments of one PDU each through the filter to the
/// decoder; the PDUs the client got.
fn target_fragmented(
    filter: &mut Filter,
    decoder: &mut crate::decode::PassiveDecoder,
    code: u8,
    data: &[u8],
) -> Vec<u8> {
    const CHUNK: usize = 0x7FFF - 6;
    let pieces: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let mut released = None;
    for (n, piece) in pieces.iter().enumerate() {
        let fragmentation = match n {
            0 => 2u8,
            _ if n + 1 == pieces.len() => 1,
            _ => 3,
        };
        let length = 6 + piece.len();
        let mut pdu = vec![0x00, 0x80 | (length >> 8) as u8, length as u8, code | (fragmentation << 4)];
        pdu.extend(u16::try_from(piece.len()).unwrap().to_le_bytes());
        pdu.extend(*piece);
        match filter.from_target(&pdu).unwrap() {
            Verdict::Drop => {}
            Verdict::Replace(out) => released = Some(out),
            other => panic!("{other:?}"),
        }
    }
    let out = released.expect("released whole");
    observe_all(decoder, &out);
    out
}

/// The decoder reads `out`, fast-path PDUs one after another.
fn observe_all(decoder: &mut crate::decode::PassiveDecoder, out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        let (length, _) = crate::decode::fast_path_length(rest).unwrap();
        decoder.observe_target(&rest[..length]).unwrap();
        rest = &rest[length..];
    }
}

/// Hole 3 (closed: a picture past the bound ends the session): the 8 MiB bound on the pictures
/// kept for after a reactivation failed open. Past
/// `PICTURES_MAX` a new picture is set (and drawn) but not kept; after a reactivation its
/// Cached Pointer passes as sent: FreeRDP (whose cache outlives the reactivation) shows the
/// picture, the recorder (whose cache was rebuilt empty) shows none. A program of the session
/// sets 14 Large Pointers of 384x384 (590 KB each, cache indices 0 to 13: within FreeRDP's 32,
/// the filter checks no index against the negotiated cache size), then its real one (200x200) at
/// index 14; after the next reactivation (a resize) it shows index 14: the client's cursor is the
/// program's picture, the video shows no pointer — so every Pointer Position crosses drawn by no
/// one (4 bytes each, ~18 KB a PDU, as in hole 1), and what the cursor shows is unrecorded.
/// Fix direction: when a picture cannot be kept, refuse it (or evict the oldest and send a
/// Cached Pointer of an evicted index as the Default/Null pointer to both), and refuse cache
/// indices past the negotiated pointer cache size.
#[test]
fn red17q_a_picture_past_the_pictures_bound_is_shown_after_a_reactivation_by_the_client_alone() {
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    let side = 384u16;
    let filler: Vec<u8> = [0x40, 0x40, 0x40, 0xFF].repeat(usize::from(side) * usize::from(side));
    for index in 0..14 {
        target_fragmented(&mut filter, &mut decoder, 0x0C, &large_pointer(index, side, &filler));
    }
    // 14 x 590 KB kept: 116 KB of the 8 MiB are left, the real picture (200x200) is larger.
    let secret: Vec<u8> = file(200 * 200 * 3).chunks(3).flat_map(|c| [c[0], c[1], c[2], 0xFF]).collect();
    let real = large_pointer(14, 200, &secret);
    let pieces: Vec<&[u8]> = real.chunks(0x7FFF - 6).collect();
    let mut verdict = Verdict::Drop;
    for (n, piece) in pieces.iter().enumerate() {
        let fragmentation = if n == 0 {
            2u8
        } else if n + 1 == pieces.len() {
            1
        } else {
            3
        };
        let length = 6 + piece.len();
        let mut pdu = vec![0x00, 0x80 | (length >> 8) as u8, length as u8, 0x0C | fragmentation << 4];
        pdu.extend(u16::try_from(piece.len()).unwrap().to_le_bytes());
        pdu.extend(*piece);
        verdict = filter.from_target(&pdu).unwrap();
    }
    assert_eq!(verdict, Verdict::Refuse(crate::pointer::POINTER_UNREADABLE), "a picture the box cannot keep");
}
