//! The SFTP observer sees every byte a client or target sends: it must never panic, and what
//! it reports must not depend on how the stream was split into packets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::sftp::SftpObserver;

fuzz_target!(|data: &[u8]| {
    let (split, rest) = match data.split_first() {
        Some((s, r)) => (*s as usize % 64 + 1, r),
        None => return,
    };
    let half = rest.len() / 2;
    let (c, s) = rest.split_at(half);
    let mut whole = SftpObserver::default();
    let mut a = whole.client(c);
    a.extend(whole.server(s));
    a.extend(whole.finish());
    let mut pieces = SftpObserver::default();
    let mut b = Vec::new();
    for chunk in c.chunks(split) {
        b.extend(pieces.client(chunk));
    }
    for chunk in s.chunks(split) {
        b.extend(pieces.server(chunk));
    }
    b.extend(pieces.finish());
    assert_eq!(a, b);
});
