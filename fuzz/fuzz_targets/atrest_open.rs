//! Recordings are read back from a disk anyone may have written to: whatever is done to a
//! `witness-enc/3` file without its key (records removed, repeated, reordered, a byte flipped,
//! the end cut), reading it never panics and never yields anything but the recording's first
//! records, in their order.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::atrest::{self, Cipher, Header, Sealer};

fuzz_target!(|input: (bool, Vec<Vec<u8>>, Vec<u8>, u16, u8, u16)| {
    let (aes, parts, order, flip_at, flip_mask, cut) = input;
    let parts: Vec<Vec<u8>> = parts.into_iter().take(8).map(|p| p.into_iter().take(64).collect()).collect();
    if parts.is_empty() {
        return;
    }
    let cipher = if aes { Cipher::Aes256Gcm } else { Cipher::XChaCha20Poly1305 };
    let dek = [7u8; 32];
    let header = Header::new(cipher, "r", "k", atrest::wrap(&[1; 32], &dek, [2; 24]));
    let mut sealer = Sealer::new(&header, &dek, [3; 16]);
    let records: Vec<Vec<u8>> = parts.iter().map(|p| sealer.seal(p)).collect();
    let mut file = header.line();
    if order.is_empty() {
        records.iter().for_each(|r| file.extend_from_slice(r));
    } else {
        order.iter().take(16).for_each(|i| file.extend_from_slice(&records[*i as usize % records.len()]));
    }
    let head = header.line().len();
    if file.len() > head {
        let at = head + flip_at as usize % (file.len() - head);
        file[at] ^= flip_mask;
        let keep = file.len() - cut as usize % (file.len() - head + 1);
        file.truncate(keep);
    }
    let prefixes: Vec<Vec<u8>> = (0..=parts.len()).map(|k| parts[..k].concat()).collect();
    let (plain, len) = atrest::open(&file, &dek, false).expect("a header it wrote parses");
    assert!(len <= file.len());
    assert!(prefixes.contains(&plain), "read something other than the first records in order");
    if let Ok((strict, n)) = atrest::open(&file, &dek, true) {
        assert_eq!((strict, n), (plain, file.len()));
    }
    let _ = atrest::is_torn(&file[len..]);
});
