//! The passive RDP decoder sees every PDU a target sends (and the client's): whatever arrives, it
//! must return an error rather than panic. Half the inputs start from a real connection sequence
//! (captured from freerdp-shadow) so the fuzzed PDUs reach the active stage and its codecs. The
//! recording's sans-IO judgements on the same bytes (whether a skipped PDU is repaired by a
//! redraw, the client's pointer position) and pointer moves drawn at once are fuzzed alongside;
//! the walk of every target screen PDU for what the stage would skip (`decode::audit`) runs inside.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_rdp_core::decode::{DecodeError, PassiveDecoder, last_pointer, repairable};

/// Records of a tag byte (`C`, `T`, `M`), a little-endian u32 length and the bytes.
const CAPTURE: &[u8] = include_bytes!("../../firmware/witness-rdp-core/src/testdata/shadow_remotefx.cap");

fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = data.split_first()?;
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let bytes = rest.get(4..4 + len)?;
        data = &rest[4 + len..];
        Some((tag, bytes))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut decoder = PassiveDecoder::new();
    if mode & 1 == 1 {
        // The handshake up to the first graphics: everything before the first fast-path PDU.
        for (tag, frame) in records(CAPTURE) {
            if tag == b'T' && frame.first().is_some_and(|b| b & 3 != 3) {
                break;
            }
            match tag {
                b'C' => decoder.observe_client(frame).unwrap(),
                b'T' => drop(decoder.observe_target(frame).unwrap()),
                _ => {}
            }
        }
    }
    // Fuzzed PDUs: a direction byte, a u16 length, then the PDU.
    while let Some((&dir, r)) = rest.split_first() {
        let Some(len) = r.get(..2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))) else { return };
        let frame = &r[2..(2 + len).min(r.len())];
        rest = &r[(2 + len).min(r.len())..];
        let io = decoder.session_ids().map(|ids| ids.io_channel_id);
        let _ = repairable(frame, io);
        let panicked = if dir & 1 == 0 {
            let pointer = last_pointer(frame);
            let mut panicked = matches!(decoder.observe_client(frame), Err(DecodeError::Panicked));
            if let Some((x, y)) = pointer.filter(|_| dir & 2 == 2) {
                panicked |= matches!(decoder.set_pointer(x, y), Err(DecodeError::Panicked));
            }
            panicked
        } else {
            matches!(decoder.observe_target(frame), Err(DecodeError::Panicked))
        };
        assert!(!panicked, "the decoder panicked");
        if let Some(screen) = decoder.screen() {
            assert!(screen.bgrx.len() >= screen.stride * usize::from(screen.height));
        }
    }
});
