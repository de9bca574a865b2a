//! Red team `h-red17p`'s attacks on the two fixes of red team `h-red17m`'s holes 5 and 8
//! (issue 17): pointer updates read exactly and made canonical in place ([`crate::pointer`],
//! `FastPathWalk`), and the pointer drawn over the video by the recorder at half its opacity at
//! most ([`crate::decode::Overlay`]). Each test passes while its hole is open (asserting the
//! attacker's success), or, once fixed, shows the attack refused.
//!
//! The parties are those of red teams `h-red17i` to `h-red17n`: an insider's client (a custom or
//! patched FreeRDP) and, on the target, a program of the session that sets the session's cursor
//! (an X client setting an ARGB cursor through XFixes or Xcursor, which xorgxrdp sends as a
//! pointer update; Windows' `SetCursor`), on any grant, as often as it likes.

use super::red17m::{carries, file, replayed_with_demand_active as replayed};
use super::*;
use crate::decode::PassiveDecoder;

/// A fast-path output PDU of one update of `code`.
pub(super) fn fast_path_update(code: u8, body: &[u8]) -> Vec<u8> {
    let length = 3 + 3 + body.len();
    assert!(length <= 0x7FFF, "one fast-path PDU");
    let mut pdu = vec![0x00, 0x80 | (length >> 8) as u8, length as u8, code];
    pdu.extend(u16::try_from(body.len()).unwrap().to_le_bytes());
    pdu.extend(body);
    pdu
}

/// A New Pointer's body (fast-path 0xB): xorBpp, TS_COLORPOINTERATTRIBUTE.
pub(super) fn new_pointer(bpp: u16, hot: (u16, u16), side: u16, xor: &[u8], and: &[u8]) -> Vec<u8> {
    let mut body = bpp.to_le_bytes().to_vec();
    body.extend(0u16.to_le_bytes());
    body.extend(hot.0.to_le_bytes());
    body.extend(hot.1.to_le_bytes());
    body.extend(side.to_le_bytes());
    body.extend(side.to_le_bytes());
    body.extend(u16::try_from(and.len()).unwrap().to_le_bytes());
    body.extend(u16::try_from(xor.len()).unwrap().to_le_bytes());
    body.extend(xor);
    body.extend(and);
    body
}

/// A fast-path bitmap update: one raw 32 bpp `size` x `size` square of `bgrx` at `left`, `top`.
fn square(left: u16, top: u16, size: u16, bgrx: [u8; 4]) -> Vec<u8> {
    let pixels = usize::from(size) * usize::from(size);
    let mut update = vec![0x01, 0x00, 0x01, 0x00];
    for v in [left, top, left + size - 1, top + size - 1, size, size, 32, 0] {
        update.extend(v.to_le_bytes());
    }
    update.extend(u16::try_from(pixels * 4).unwrap().to_le_bytes());
    update.extend(bgrx.repeat(pixels));
    fast_path_update(0x01, &update)
}

/// The client's fast-path mouse move to `x`, `y`.
pub(super) fn mouse(x: u16, y: u16) -> Vec<u8> {
    let mut mouse = vec![0x04, 9, 0x20];
    mouse.extend(0x0800u16.to_le_bytes());
    mouse.extend(x.to_le_bytes());
    mouse.extend(y.to_le_bytes());
    mouse
}

/// Passes `frame` from the target through the filter to the decoder; what the client got.
pub(super) fn target(filter: &mut Filter, decoder: &mut PassiveDecoder, frame: &[u8]) -> Vec<u8> {
    let out = match filter.from_target(frame).unwrap() {
        Verdict::Forward => frame.to_vec(),
        Verdict::Replace(out) => out,
        other => panic!("the filter did not pass it: {other:?}"),
    };
    decoder.observe_target(&out).expect("decoded");
    out
}

pub(super) fn client(filter: &mut Filter, decoder: &mut PassiveDecoder, frame: &[u8]) {
    let out = match filter.from_client(frame).unwrap() {
        Verdict::Forward => frame.to_vec(),
        Verdict::Replace(out) => out,
        other => panic!("the filter did not pass it: {other:?}"),
    };
    decoder.observe_client(&out).unwrap();
}

fn screen_at(d: &PassiveDecoder, x: usize, y: usize) -> [u8; 3] {
    let s = d.screen().expect("a screen");
    let at = y * s.stride + x * 4;
    [s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]]
}

/// The recorder's blend of a pointer pixel over the screen (witness-video `canvas::draw_over`).
pub(super) fn blend(dst: u8, src: u8, alpha: u8) -> u8 {
    let a = u16::from(alpha.min(crate::decode::POINTER_MAX_ALPHA));
    ((u16::from(dst) * (255 - a) + u16::from(src) * a + 127) / 255) as u8
}

/// Hole 1 (closed): an indexed pointer's colour indices crossed whole, but the recorder's
/// palette is IronRDP's default until the target sends one (indices 0 and 10 to 245 black) and
/// FreeRDP's starts zeroed: with AND bits set both drew a transparent pointer while the client
/// read 7 bits a pixel (8 KB per 96x96 New Pointer, 126 KB per Large). Now 4 and 8 bpp pointers
/// end the session (targets send 1, 24 and 32 bpp ones).
#[test]
fn red17p_an_indexed_pointer_carries_seven_bits_a_pixel_the_recorder_draws_transparent() {
    let (mut filter, _, _) = replayed();
    for bpp in [4u16, 8] {
        let row = usize::from(bpp) * 96 / 8;
        let frame = fast_path_update(0x0B, &new_pointer(bpp, (0, 0), 96, &vec![10; row * 96], &vec![0xFF; 12 * 96]));
        assert_eq!(
            filter.from_target(&frame).unwrap(),
            Verdict::Refuse(crate::pointer::POINTER_UNREADABLE),
            "{bpp} bpp"
        );
    }
}

/// Hole 2 (closed): only colours under alpha 0 were zeroed; a 32 bpp pixel of alpha 1 kept
/// three colour bytes the video cannot show (it moves a channel by at most a level): 12 KB per
/// 64x64 New Pointer, 432 KB per Large. Now a pixel fainter than 16 of 255 is fully transparent
/// and a channel is kept only as finely as its alpha shows it: nothing of the file crosses.
#[test]
fn red17p_pointer_pixels_of_alpha_one_carry_three_bytes_each_the_video_cannot_show() {
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    let payload = file(64 * 64 * 3);
    let faint: Vec<u8> = payload.chunks(3).flat_map(|c| [c[0], c[1], c[2], 15]).collect();
    let frame = fast_path_update(0x0B, &new_pointer(32, (0, 0), 64, &faint, &vec![0; 8 * 64]));
    let out = target(&mut filter, &mut decoder, &frame);
    assert!(out[6 + 16..6 + 16 + faint.len()].iter().all(|&b| b == 0), "faint pixels crossed");
    // At alpha 16 a channel keeps the levels the client's blend can show: 17, not 256.
    let dim: Vec<u8> = (0..64 * 64).flat_map(|i| [(i % 256) as u8, 0, 0, 16]).collect();
    let frame = fast_path_update(0x0B, &new_pointer(32, (0, 0), 64, &dim, &vec![0; 8 * 64]));
    let out = target(&mut filter, &mut decoder, &frame);
    let kept: std::collections::BTreeSet<u8> = out[6 + 16..6 + 16 + dim.len()].chunks(4).map(|p| p[0]).collect();
    assert_eq!(kept.len(), 17, "{kept:?}");
}

/// Hole 3 (closed): FreeRDP resets a hot spot at or past the picture's width or height to 0
/// and draws the picture at the mouse; the recorder kept 65535 and placed it ~65,000 pixels off
/// the video: an opaque 96x96 (384x384) picture under the client's mouse, never recorded. Now
/// the canonical form resets such a hot spot to 0, so both draw it at the mouse.
#[test]
fn red17p_a_hot_spot_past_the_picture_keeps_the_pointer_out_of_the_video() {
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    let secret = file(64 * 64 * 3);
    let xor: Vec<u8> = secret.chunks(3).flat_map(|c| [c[0], c[1], c[2], 0xFF]).collect();
    let frame = fast_path_update(0x0B, &new_pointer(32, (0xFFFF, 0xFFFF), 64, &xor, &vec![0; 8 * 64]));
    let out = target(&mut filter, &mut decoder, &frame);
    assert_eq!((u16_at(&out, 6 + 4), u16_at(&out, 6 + 6)), (Some(0), Some(0)), "the hot spot the client gets");
    let p = decoder.screen().unwrap().pointer.expect("the recorder has the pointer");
    assert_eq!((p.x, p.y), (100, 100), "drawn at the mouse");
    // A hot spot inside the picture stays.
    let frame = fast_path_update(0x0B, &new_pointer(32, (5, 63), 64, &xor, &vec![0; 8 * 64]));
    let out = target(&mut filter, &mut decoder, &frame);
    assert_eq!((u16_at(&out, 6 + 4), u16_at(&out, 6 + 6)), (Some(5), Some(63)));
}

/// Hole 4 (closed: the stage is re-keyed with software rendering off): hole 8 of red team
/// `h-red17m` came back after any reactivation. The decoder
/// builds the stage with `pointer_software_rendering: false`, but re-keys it on every later
/// Demand Active with `stage.reactivate(.., true, true, ..)`: IronRDP then renders pointers in
/// software again, into the decoded screen, opaque, at the position the target last sent
/// (PointerPosition), and hands the recorder only PointerHidden (no overlay is drawn at all).
/// A program of the session (or the target's RDP server: a resize, a reconnect, a Deactivate
/// All/Demand Active of its own) reactivates once, then sets an opaque cursor as large as the
/// client takes and moves it with PointerPosition over what the admin works on: the recording
/// shows the program's picture there, the client (whose insider does not draw pointers, or
/// draws its own) the real screen. Capacity: a 96x96 (384x384) patch of the recorded screen,
/// anywhere, for the rest of the session. Fix direction: reactivate with `false` for software
/// rendering (and a test that a pointer after a reactivation stays out of the screen).
#[test]
fn red17p_after_a_reactivation_the_pointer_is_drawn_into_the_recorded_screen_again() {
    const RED: [u8; 4] = [0, 0, 255, 0];
    let green: Vec<u8> = [0, 0xFF, 0, 0xFF].repeat(64 * 64);
    let mut position = 100u16.to_le_bytes().to_vec();
    position.extend(100u16.to_le_bytes());
    // The admin's red square, then the program's 64x64 opaque green cursor moved onto it, then
    // the square redrawn: how many of its pixels the recorded screen shows green.
    let masked = |reactivate: bool| {
        let (mut filter, mut decoder, demand_active) = replayed();
        if reactivate {
            target(&mut filter, &mut decoder, &demand_active);
        }
        target(&mut filter, &mut decoder, &square(100, 100, 64, RED));
        assert_eq!(screen_at(&decoder, 130, 130), [0, 0, 255], "recorded before the mask");
        let cursor = new_pointer(32, (0, 0), 64, &green, &vec![0; 8 * 64]);
        target(&mut filter, &mut decoder, &fast_path_update(0x0B, &cursor));
        target(&mut filter, &mut decoder, &fast_path_update(0x08, &position));
        target(&mut filter, &mut decoder, &square(100, 100, 64, RED));
        (100..164)
            .flat_map(|y| (100..164).map(move |x| (x, y)))
            .filter(|&(x, y)| screen_at(&decoder, x, y)[1] > 200)
            .count()
    };
    // In the session as first activated, and after the target's Demand Active again, the
    // pointer stays out of the screen (it is drawn over the video, at a quarter at most).
    assert_eq!(masked(false), 0, "the pointer drawn into the screen before any reactivation");
    assert_eq!(masked(true), 0, "the pointer drawn into the recorded screen after a reactivation");
}

/// Hole 5 (closed): the pointer was drawn over the video only at a position the decoder knew:
/// the client's fast-path mouse input or the target's PointerPosition. A client that moved its
/// mouse by slow-path input (TS_INPUT_PDU, which xrdp acts on) or only by fast-path extended
/// mouse events (TS_FP_POINTERX_EVENT) never gave one, and no pointer picture was ever recorded
/// while FreeRDP drew the target's under its mouse. Now the relay (`last_pointer`) and the
/// decoder read every event that places the mouse.
#[test]
fn red17p_a_client_moving_its_mouse_by_slow_path_input_never_gets_the_pointer_recorded() {
    let (mut filter, mut decoder, _) = replayed();
    let ids = decoder.session_ids().expect("active");
    // The client's slow-path Input PDU: one mouse move to 100, 100.
    let mut body = 1u16.to_le_bytes().to_vec();
    body.extend(0u16.to_le_bytes());
    body.extend(0u32.to_le_bytes());
    body.extend(0x8001u16.to_le_bytes());
    body.extend(0x0800u16.to_le_bytes());
    body.extend(100u16.to_le_bytes());
    body.extend(100u16.to_le_bytes());
    let total = u16::try_from(18 + body.len()).unwrap();
    let mut pdu = total.to_le_bytes().to_vec();
    pdu.extend(0x0017u16.to_le_bytes());
    pdu.extend(ids.user_channel_id.to_le_bytes());
    pdu.extend(ids.share_id.to_le_bytes());
    pdu.extend([0, 1]);
    pdu.extend(u16::try_from(4 + body.len()).unwrap().to_le_bytes());
    pdu.extend([PDUTYPE2_INPUT, 0, 0, 0]);
    pdu.extend(&body);
    let input = encode_vec(&X224(SendDataRequest {
        initiator_id: ids.user_channel_id,
        channel_id: ids.io_channel_id,
        user_data: Cow::Owned(pdu),
    }))
    .unwrap();
    client(&mut filter, &mut decoder, &input);
    assert_eq!(crate::decode::last_pointer(&input), Some((100, 100)), "the relay's position");
    assert_eq!(decoder.pointer(), Some((100, 100)), "the decoder's");
    // A fast-path extended mouse event (TS_FP_POINTERX_EVENT: an X1 button release at 120, 120,
    // which xrdp turns into a click at that place and so moves the pointer there).
    let mut extended = vec![0x04, 9, 0x02 << 5];
    extended.extend(0x0001u16.to_le_bytes());
    extended.extend(120u16.to_le_bytes());
    extended.extend(120u16.to_le_bytes());
    client(&mut filter, &mut decoder, &extended);
    assert_eq!(crate::decode::last_pointer(&extended), Some((120, 120)), "the relay's position");
    // The program's cursor: 64x64 opaque, any picture: in the video, where the client's mouse is.
    let picture: Vec<u8> = file(64 * 64 * 3).chunks(3).flat_map(|c| [c[0], c[1], c[2], 0xFF]).collect();
    let frame = fast_path_update(0x0B, &new_pointer(32, (0, 0), 64, &picture, &vec![0; 8 * 64]));
    target(&mut filter, &mut decoder, &frame);
    let p = decoder.screen().unwrap().pointer.expect("the video shows the pointer");
    assert_eq!((p.x, p.y), (120, 120));
}

/// Hole 6 (closed for a hidden pointer: its Position updates are left out; open while one is
/// shown, see ARCHITECTURE.md): a Position update (fast-path 0x8, slow-path PTR_MSG_TYPE_POSITION) is read for
/// its length alone: its x and y (4 bytes) cross whatever they are. The recorder only moves the
/// pointer it draws — and with the pointer hidden (a Null Pointer update) it draws none, and
/// even with one shown the video samples it at its frame rate, so every position but the last
/// of a frame is drawn by no one. A program of the session hides the cursor and streams
/// positions packed in fast-path PDUs; the insider's client reads them (FreeRDP warps a hidden
/// cursor, nothing on screen). Capacity: 4 bytes a 7-byte update, ~18 KB per 32 KB fast-path
/// PDU, at the link's rate, nothing in the video. Fix direction: refuse positions outside the
/// desktop, and hold position updates to what the video can show (at most one per frame, the
/// latest; none while the pointer is hidden), or record them.
#[test]
fn red17p_pointer_positions_carry_four_bytes_each_while_the_pointer_is_hidden() {
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    // A cursor the video shows, then hidden (a Null Pointer update).
    let shown: Vec<u8> = [0xFF; 4].repeat(32 * 32);
    target(&mut filter, &mut decoder, &fast_path_update(0x0B, &new_pointer(32, (0, 0), 32, &shown, &[0; 4 * 32])));
    assert!(decoder.screen().unwrap().pointer.is_some(), "shown");
    target(&mut filter, &mut decoder, &fast_path_update(0x05, &[]));
    assert!(decoder.screen().unwrap().pointer.is_none(), "hidden");
    let payload = file(4 * 4000);
    let frame = positions_frame(&payload);
    assert_eq!(filter.from_target(&frame).unwrap(), Verdict::Drop, "positions of a hidden pointer pass");
    // Beside other updates they are left out of the PDU.
    let mut mixed = vec![0x08, 4, 0, 1, 2, 3, 4, 0x05, 0, 0];
    mixed.extend([0x08, 4, 0, 5, 6, 7, 8]);
    let length = 3 + mixed.len();
    let mut frame = vec![0x00, 0x80 | (length >> 8) as u8, length as u8];
    frame.extend(&mixed);
    let Verdict::Replace(out) = filter.from_target(&frame).unwrap() else { panic!("passed as sent") };
    assert_eq!(out, [0x00, 0x80, 6, 0x05, 0, 0], "only the null pointer");
}

/// What held (for the record): a fragmented pointer interleaved with anything else ends the
/// session — a pointer's first fragment followed by another update in the same PDU or the next,
/// or by a fragment of another pointer code, or a single pointer update in its middle — and the
/// PDUs held for a fragmented pointer are bounded (first and next fragments without end are
/// refused past 1 MiB).
#[test]
fn red17p_pointer_fragments_interleaved_with_anything_else_are_refused() {
    let fragment = |code: u8, flags: u8, data: &[u8]| {
        let mut u = vec![code | flags << 4];
        u.extend(u16::try_from(data.len()).unwrap().to_le_bytes());
        u.extend(data);
        u
    };
    let pdu = |updates: &[Vec<u8>]| {
        let body = updates.concat();
        let length = 3 + body.len();
        let mut pdu = vec![0x00, 0x80 | (length >> 8) as u8, length as u8];
        pdu.extend(body);
        pdu
    };
    let first = fragment(0x0B, 2, &[32, 0, 0, 0]);
    let bitmap = square(0, 0, 8, [1, 2, 3, 0])[3..].to_vec();
    let refused = |frames: &[Vec<u8>]| {
        let (mut f, _, _) = replayed();
        frames.iter().any(|frame| matches!(f.from_target(frame).unwrap(), Verdict::Refuse(_)))
    };
    assert!(refused(&[pdu(&[first.clone(), bitmap.clone()])]), "a bitmap behind a first fragment");
    assert!(refused(&[pdu(std::slice::from_ref(&first)), pdu(&[bitmap])]), "a bitmap after a held first fragment");
    assert!(
        refused(&[pdu(std::slice::from_ref(&first)), pdu(&[fragment(0x0C, 1, &[0; 4])])]),
        "another pointer's last fragment"
    );
    assert!(
        refused(&[pdu(std::slice::from_ref(&first)), pdu(&[fragment(0x08, 0, &[0; 4])])]),
        "a position in the middle"
    );
    assert!(refused(&[pdu(&[fragment(0x0B, 1, &[0; 4])])]), "a last fragment alone");
    // Next fragments without end: refused once more than 1 MiB is held.
    let (mut f, _, _) = replayed();
    assert_eq!(f.from_target(&pdu(std::slice::from_ref(&first))).unwrap(), Verdict::Drop);
    let next = pdu(&[fragment(0x0B, 3, &[0; 16_000])]);
    let held = (0..100).take_while(|_| f.from_target(&next).unwrap() == Verdict::Drop).count();
    assert!((60..=66).contains(&held), "held {held} next fragments");
}

/// Hole 7 (closed): FreeRDP reads a 16 bpp pointer as RGB555, IronRDP (the recorder) as RGB565:
/// FreeRDP's white was recorded cyan and its black red. Now 16 bpp pointers end the session.
#[test]
fn red17p_a_16_bpp_pointer_is_drawn_in_other_colours_by_the_client_and_the_recorder() {
    let (mut filter, _, _) = replayed();
    let xor: Vec<u8> = [0x7FFFu16, 0x8000, 0x7FFF, 0x8000].iter().flat_map(|v| v.to_le_bytes()).collect();
    let frame = fast_path_update(0x0B, &new_pointer(16, (0, 0), 2, &xor, &[0; 4]));
    assert_eq!(filter.from_target(&frame).unwrap(), Verdict::Refuse(crate::pointer::POINTER_UNREADABLE));
}

/// Hole 8 (closed: the filter keeps each canonical picture by cache index and sends a Cached
/// Pointer the recorder lacks after a reactivation as the picture itself): the recorder's pointer cache does not live as long as the client's. IronRDP
/// keeps its pointer cache in the fast-path processor, which `ActiveStage::reactivate` builds
/// anew: after any reactivation every cached pointer is gone from the recorder, and a Cached
/// Pointer update naming one is dropped with a warning (nothing reaches the decoder, the audit
/// does not see it). FreeRDP's cache is made at connection and is not reset by a Deactivate
/// All (`rdp_recv_deactivate_all` in libfreerdp/core/activation.c touches no cache), so it sets
/// the cached pointer. A program of the session sets its picture once with a New Pointer and
/// hides it in the same PDU (the decoder reads the whole PDU before the recorder looks: the
/// picture never reaches the video), the target reactivates (a resize), and from then on the
/// program shows the picture with 3-byte Cached Pointer updates: the client draws it under the
/// mouse, the video shows no pointer. Capacity: any pointer picture (96x96, 384x384 Large), as
/// long as the session lasts, never recorded. Fix direction: keep the decoder's own pointer
/// cache across reactivations (by index, from the PointerBitmap outputs and the update's cache
/// index) or refuse Cached Pointer updates for indices the recorder does not hold.
#[test]
fn red17p_a_pointer_cached_before_a_reactivation_is_shown_by_the_client_alone() {
    let picture: Vec<u8> = file(64 * 64 * 3).chunks(3).flat_map(|c| [c[0], c[1], c[2], 0xFF]).collect();
    let shown_after = |reactivate: bool| {
        let (mut filter, mut decoder, demand_active) = replayed();
        client(&mut filter, &mut decoder, &mouse(100, 100));
        // New Pointer at cache index 3, then a Null Pointer, in one fast-path PDU.
        let mut set = new_pointer(32, (0, 0), 64, &picture, &[0; 8 * 64]);
        set[2..4].copy_from_slice(&3u16.to_le_bytes());
        let mut updates = vec![0x0B];
        updates.extend(u16::try_from(set.len()).unwrap().to_le_bytes());
        updates.extend(&set);
        updates.extend([0x05, 0, 0]);
        let length = 3 + updates.len();
        let mut frame = vec![0x00, 0x80 | (length >> 8) as u8, length as u8];
        frame.extend(&updates);
        // Passed (its colours kept as finely as the video shows them), the recorder shown it.
        let passed = match filter.from_target(&frame).unwrap() {
            Verdict::Forward => frame.clone(),
            Verdict::Replace(out) => out,
            other => panic!("{other:?}"),
        };
        let drawn = decoder.observe_target(&passed).unwrap();
        assert!(drawn.is_empty(), "the recorder was told of the picture: {drawn:?}");
        assert!(decoder.screen().unwrap().pointer.is_none());
        if reactivate {
            target(&mut filter, &mut decoder, &demand_active);
        }
        // The program shows it: Cached Pointer, index 3.
        target(&mut filter, &mut decoder, &fast_path_update(0x0A, &3u16.to_le_bytes()));
        decoder.screen().unwrap().pointer.is_some()
    };
    // Without a reactivation the recorder draws the cached picture; after one too (the box sends
    // the picture itself, which FreeRDP draws as it would the cached one).
    assert!(shown_after(false), "the recorder draws the cached pointer");
    assert!(shown_after(true), "the recorder lacks the pointer cached before the reactivation");
}

/// Hole 9 (closed: the cap is now a quarter, `POINTER_MAX_ALPHA` 64): half opacity did not keep
/// what is beneath the pointer in the video. The
/// recorder blends the pointer at alpha 128 of 255 at most; a pointer whose picture is the
/// negative of the screen beneath it blends to flat grey: dst·127/255 + (255 − dst)·128/255 is
/// 127 or 128 whatever dst is. The program of the session that sets the cursor sees the screen
/// (it is on the target: XGetImage, xwd) and the client's mouse (the target gets its input), and
/// sets, as the screen changes, an opaque cursor that is the negative of what lies under the
/// mouse; the insider's client does not draw the target's pointer (or draws its own) and works
/// on the real screen; the recording shows a grey square where it works. Capacity: a 96x96
/// (384x384 with large pointers) region of the recorded screen, anywhere the mouse is, erased to
/// ±1 level, as long as the program keeps up (one New Pointer per screen change, or Cached
/// Pointers). Any cap a leaves a contrast of |1 − 2a|: 0.5 only at a = 64. Fix direction: do not
/// blend the target's picture over the recorded screen at all (draw a fixed marker or outline
/// where the pointer is, and record the pointer's picture beside the video), or cap alpha far
/// lower (a ≤ 64 keeps half the contrast).
#[test]
fn red17p_a_pointer_that_is_the_screens_negative_erases_it_from_the_video() {
    let (mut filter, mut decoder, _) = replayed();
    const SIDE: usize = 64;
    // The admin's document at (100, 100): black "text" on white (the file's bits).
    let text: Vec<bool> = file(SIDE * SIDE / 8).iter().flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1)).collect();
    let mut update = vec![0x01, 0x00, 0x01, 0x00];
    let side = SIDE as u16;
    for v in [100, 100, 100 + side - 1, 100 + side - 1, side, side, 32, 0] {
        update.extend(v.to_le_bytes());
    }
    update.extend(u16::try_from(SIDE * SIDE * 4).unwrap().to_le_bytes());
    // Raw bitmaps are bottom-up.
    for row in (0..SIDE).rev() {
        for x in 0..SIDE {
            let v = if text[row * SIDE + x] { 0 } else { 255 };
            update.extend([v, v, v, 0]);
        }
    }
    target(&mut filter, &mut decoder, &fast_path_update(0x01, &update));
    client(&mut filter, &mut decoder, &mouse(100, 100));
    // The program reads the screen under the mouse and sets its negative as the cursor (32 bpp,
    // opaque, rows bottom-up, hot spot 0, 0).
    let screen = decoder.screen().unwrap();
    let mut xor = Vec::new();
    for row in (0..SIDE).rev() {
        for x in 0..SIDE {
            let at = (100 + row) * screen.stride + (100 + x) * 4;
            let [b, g, r] = [screen.bgrx[at], screen.bgrx[at + 1], screen.bgrx[at + 2]];
            xor.extend([255 - b, 255 - g, 255 - r, 0xFF]);
        }
    }
    let frame = fast_path_update(0x0B, &new_pointer(32, (0, 0), side, &xor, &vec![0; 8 * SIDE]));
    let out = target(&mut filter, &mut decoder, &frame);
    assert!(carries(&Verdict::Replace(out), &frame, &xor), "the negative crossed as set");
    // The client sees the document: black and white.
    assert_eq!(screen_at(&decoder, 100, 100), if text[0] { [0; 3] } else { [255; 3] });
    assert!(text.iter().any(|&t| t) && text.iter().any(|&t| !t));
    // The video: the document keeps at least half its contrast (ink at most 64, paper at least
    // 191), the pointer drawn at a quarter at most.
    let screen = decoder.screen().unwrap();
    let p = screen.pointer.expect("the recorder draws the pointer");
    assert_eq!((p.x, p.y, usize::from(p.width)), (100, 100, SIDE));
    for y in 0..SIDE {
        for x in 0..SIDE {
            let at = (100 + y) * screen.stride + (100 + x) * 4;
            let px = &p.rgba[(y * SIDE + x) * 4..][..4];
            for (dst, src) in [(screen.bgrx[at], px[2]), (screen.bgrx[at + 1], px[1]), (screen.bgrx[at + 2], px[0])] {
                let seen = blend(dst, src, px[3]);
                assert!(if dst == 0 { seen <= 64 } else { seen >= 191 }, "at {x},{y}: {dst} shows as {seen}");
            }
        }
    }
}

/// Splits `data` (one update of `code`) into fast-path fragments whose sizes spell `bits` (a
/// 1-byte fragment for a 1, an empty one for a 0), the rest in the last fragment, packed into
/// fast-path PDUs of at most ~30 KB.
fn spelt_fragments(code: u8, data: &[u8], bits: &[u8]) -> Vec<Vec<u8>> {
    let mut fragments: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    for &bit in bits {
        let take = usize::from(bit);
        fragments.push(data[at..at + take].to_vec());
        at += take;
    }
    fragments.push(data[at..].to_vec());
    let last = fragments.len() - 1;
    let mut pdus = Vec::new();
    let mut body = Vec::new();
    let flush = |body: &mut Vec<u8>, pdus: &mut Vec<Vec<u8>>| {
        let length = 3 + body.len();
        let mut pdu = vec![0x00, 0x80 | (length >> 8) as u8, length as u8];
        pdu.append(body);
        pdus.push(pdu);
    };
    for (i, fragment) in fragments.iter().enumerate() {
        if body.len() + 3 + fragment.len() > 30_000 {
            flush(&mut body, &mut pdus);
        }
        let flags: u8 = if i == 0 {
            2
        } else if i == last {
            1
        } else {
            3
        };
        body.push(code | flags << 4);
        body.extend(u16::try_from(fragment.len()).unwrap().to_le_bytes());
        body.extend(fragment);
    }
    flush(&mut body, &mut pdus);
    pdus
}

/// The fragment sizes of the fast-path updates in `pdus`, in order.
fn fragment_sizes(pdus: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut rest = pdus;
    while !rest.is_empty() {
        let (length, mut at) = crate::decode::fast_path_length(rest).unwrap();
        while at < length {
            let size = usize::from(u16_at(rest, at + 1).unwrap());
            sizes.push(size);
            at += 3 + size;
        }
        rest = &rest[length..];
    }
    sizes
}

/// Hole 10 (closed): the canonical form covered a pointer's bytes, not how it was cut. Fast-path
/// fragments may be of any size (FreeRDP and IronRDP append whatever comes), and the filter
/// passed held fragments as cut: a program of the session cut its cursor into fragments of 0
/// and 1 bytes that spelt a file (one bit per 3–4 bytes, up to the 1 MiB a pointer may hold).
/// Now a held pointer is released cut the box's way (`recut`: one update when it fits a PDU,
/// else the largest fragments), so the sizes the client reads are the box's. Bitmap fragments
/// are still passed as cut (the target's RDP server cuts those, not a session's program).
#[test]
fn red17p_how_a_pointer_is_cut_into_fragments_carries_a_file() {
    let (mut filter, mut decoder, _) = replayed();
    client(&mut filter, &mut decoder, &mouse(100, 100));
    let picture: Vec<u8> = [0x10, 0x20, 0x30, 0xFF].repeat(64 * 64);
    let data = new_pointer(32, (0, 0), 64, &picture, &[0; 8 * 64]);
    let payload = file(2000);
    let bits: Vec<u8> = payload.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    let pdus = spelt_fragments(0x0B, &data, &bits);
    assert!(pdus.len() > 1, "held across PDUs");
    let mut released = None;
    for pdu in &pdus {
        match filter.from_target(pdu).unwrap() {
            Verdict::Drop => {}
            Verdict::Replace(out) => released = Some(out),
            other => panic!("{other:?}"),
        }
    }
    let out = released.expect("the pointer is released whole");
    // The client reads one update of the pointer's whole size: nothing of the file.
    let sizes = fragment_sizes(&out);
    assert_eq!(sizes, vec![data.len()], "the pointer as the client gets it");
    // The recorder draws the pointer as it would unfragmented.
    let mut rest = &out[..];
    while !rest.is_empty() {
        let (length, _) = crate::decode::fast_path_length(rest).unwrap();
        decoder.observe_target(&rest[..length]).unwrap();
        rest = &rest[length..];
    }
    let screen = decoder.screen().unwrap();
    let p = screen.pointer.expect("drawn");
    assert_eq!((p.width, &p.rgba[..4]), (64, &[0x30, 0x20, 0x10, crate::decode::POINTER_MAX_ALPHA][..]));
}

/// One fast-path PDU of pointer position updates, four bytes of `payload` each.
pub(super) fn positions_frame(payload: &[u8]) -> Vec<u8> {
    let mut updates = Vec::new();
    for xy in payload.chunks(4) {
        updates.push(0x08);
        updates.extend(4u16.to_le_bytes());
        updates.extend(xy);
    }
    let length = 3 + updates.len();
    let mut frame = vec![0x00, 0x80 | (length >> 8) as u8, length as u8];
    frame.extend(&updates);
    frame
}
