//! Output is split into packets anywhere: the carried UTF-8 text must equal a lossy decode of
//! the whole stream when the stream is valid UTF-8, and encoded events must parse back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::cast::{self, EventKind, Utf8Carry};

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first() else { return };
    let mut carry = Utf8Carry::default();
    let mut text = String::new();
    for chunk in rest.chunks(*split as usize % 7 + 1) {
        let t = carry.push(chunk);
        let mut line = Vec::new();
        cast::encode_event(&mut line, 1.0, EventKind::Output, &t);
        let (time, code, back): (f64, String, String) = serde_json_from(&line);
        assert_eq!((time, code.as_str(), back.as_str()), (1.0, "o", &*t));
        text.push_str(&t);
    }
    text.push_str(&carry.flush());
    if let Ok(s) = std::str::from_utf8(rest) {
        assert_eq!(text, s);
    }
});

fn serde_json_from(line: &[u8]) -> (f64, String, String) {
    let header = b"{\"version\":2,\"width\":1,\"height\":1,\"timestamp\":0}\n";
    let mut file = header.to_vec();
    file.extend_from_slice(line);
    let (_, events) = cast::parse(&file).expect("an encoded event parses");
    let e = &events[0];
    (e.time, e.code.clone(), e.data.clone())
}
