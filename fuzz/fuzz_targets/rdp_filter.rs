//! The RDP filter judges every slow-path PDU both ways, from a client or a target that may be
//! hostile: whatever arrives, it must not panic, and what it sends on instead must be whole PDUs.
//! The first input byte picks the grant and how much of a real session (captured from
//! freerdp-shadow with the graphics pipeline) runs first, so fuzzed PDUs meet an active session
//! with open dynamic channels.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_rdp_core::filter::{Filter, Injection, Verdict};
use witness_rdp_core::channels::{Redirection, Switches};

/// Records of a tag byte (`C`, `T`, `M`), a little-endian u32 length and the bytes.
const CAPTURE: &[u8] = include_bytes!("../../firmware/witness-rdp-core/src/testdata/shadow_gfx.cap");

fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = data.split_first()?;
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let bytes = rest.get(4..4 + len)?;
        data = &rest[4 + len..];
        Some((tag, bytes))
    })
}

/// Whatever the filter sends instead of a PDU is one or more whole PDUs.
fn check(verdict: &Verdict) {
    if let Verdict::Replace(out) = verdict {
        let mut rest = &out[..];
        assert!(!rest.is_empty(), "an empty replacement");
        while !rest.is_empty() {
            let info = ironrdp_pdu::find_size(rest).expect("a readable pdu").expect("a whole pdu");
            assert!(info.length > 0 && info.length <= rest.len(), "a pdu cut short");
            rest = &rest[info.length..];
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    // One bit for the clipboard, one for drives and every device class (and sound) with them.
    let devices = mode & 2 == 2;
    let redirection = Redirection::from_grant(Switches {
        clipboard: mode & 1 == 1,
        drives: devices,
        usb: devices,
        camera: devices,
        audio_input: devices,
        audio: devices,
    });
    let injection = Injection { username: "root".into(), domain: None, password: "target-secret".into() };
    let mut f = Filter::new(ironrdp_pdu::nego::SecurityProtocol::HYBRID, redirection, injection);
    // Up to 63 records of the real session first (none: the fuzzer's PDUs are the handshake).
    let replay = usize::from(mode >> 2);
    for (tag, frame) in records(CAPTURE).take(replay) {
        let verdict = match tag {
            b'C' => f.from_client(frame),
            b'T' => f.from_target(frame),
            _ => continue,
        };
        check(&verdict.expect("the real session passes"));
    }
    // Fuzzed PDUs: a direction byte, a u16 length, then the PDU.
    while let Some((&dir, r)) = rest.split_first() {
        let Some(len) = r.get(..2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))) else { return };
        let frame = &r[2..(2 + len).min(r.len())];
        rest = &r[(2 + len).min(r.len())..];
        let verdict = if dir & 1 == 0 { f.from_client(frame) } else { f.from_target(frame) };
        if let Ok(v) = verdict {
            check(&v);
        }
        let _ = f.take_dynamic_decisions();
    }
});
