//! A video's playable length is found from its box headers alone while the records go by
//! (`WholeScan`): whatever the bytes and however they are cut into pieces, it must not panic
//! and must say what `whole_len` of the whole file says, fed every byte or only the ones it asks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::fmp4::{WholeScan, whole_len};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, file)) = data.split_first() else { return };
    let piece = piece as usize % 17 + 1;
    let want = whole_len(file).map(|l| l as u64);
    let mut scan = WholeScan::default();
    for (k, chunk) in file.chunks(piece).enumerate() {
        scan.feed((k * piece) as u64, chunk);
    }
    assert_eq!(scan.finish(file.len() as u64), want, "fed every byte");
    let mut scan = WholeScan::default();
    while let Some((at, n)) = scan.wants() {
        let Some(bytes) = file.get(at as usize..(at as usize).saturating_add(n).min(file.len())) else { break };
        if bytes.is_empty() {
            break;
        }
        scan.feed(at, bytes);
    }
    assert_eq!(scan.finish(file.len() as u64), want, "fed only the asked bytes");
});
