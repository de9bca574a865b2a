//! The strict readers of graphics pipeline (MS-RDPEGFX, the target's as the filter hands them
//! over, decompressed), display control (MS-RDPEDISP), touch and pen input (MS-RDPEI) and sound
//! (MS-RDPEA) messages see bytes from a program on the target and from a client that may be
//! hostile: whatever arrives, they must not panic, and a message they accept (pass or drop) must
//! stop being accepted with one byte more (no trailing bytes, in any state).
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_rdp_core::messages::{Protocol, Reader};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let protocol = match mode % 4 {
        0 => Protocol::DisplayControl,
        1 => Protocol::Input,
        2 => Protocol::Audio,
        _ => Protocol::Graphics,
    };
    let mut reader = Reader::new(protocol);
    // Messages: a direction byte, a u16 length, then the message.
    while let Some((&dir, r)) = rest.split_first() {
        let Some(len) = r.get(..2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))) else { return };
        let message = &r[2..(2 + len).min(r.len())];
        rest = &r[(2 + len).min(r.len())..];
        let from_client = dir & 1 == 0;
        let mut longer = message.to_vec();
        longer.push(dir);
        let mut probe = reader.clone();
        let accepted = reader.judge(from_client, message).is_ok();
        if accepted {
            assert!(message.len() <= protocol.max_message(), "longer than the protocol's longest message");
            assert!(probe.judge(from_client, &longer).is_err(), "a trailing byte was accepted");
        }
    }
});
