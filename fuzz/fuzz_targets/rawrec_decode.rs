//! SSH recordings (raw frames or asciicast) are read back from disk, from a crash, from a bundle:
//! never panic; the scan's valid prefix decodes whole, in any split, to the same events; and
//! making a cast of it never fails once it decoded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::rawrec::{self, Decoder};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = rawrec::scan(data) else { return };
    let valid = &data[..s.valid_len];
    let decode = |piece: usize| {
        let mut d = Decoder::default();
        let mut events = Vec::new();
        for p in valid.chunks(piece.max(1)) {
            d.push(p);
            while let Ok(Some(ev)) = d.next_event() {
                events.push(ev);
            }
        }
        (events, d.finish().is_ok())
    };
    let (whole, ok) = decode(valid.len());
    let split = decode(3);
    assert_eq!(whole, split.0, "the split changes nothing");
    assert_eq!(ok, split.1);
    if ok && rawrec::scan(valid).is_ok_and(|s| !s.truncated) {
        let _ = rawrec::to_cast(valid);
    }
});
