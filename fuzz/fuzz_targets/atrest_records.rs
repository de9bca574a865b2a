//! The console serves a range of a recording by walking its records' lengths and opening only
//! some records: that must be exactly as strict as opening the whole file. A recording is sealed
//! from the input's parts, then cut, flipped or spliced as the input says; walking to the end and
//! opening every record one by one must give what `atrest::open` gives, or fail where it fails.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::atrest::{self, Cipher, Header, RecordOpener, Sealer};

fn by_records(file: &[u8], dek: &[u8; 32]) -> Option<Vec<u8>> {
    let (header, mut at) = Header::parse(file)?;
    let mut opener = RecordOpener::new(&header, dek);
    let (mut plain, mut index) = (Vec::new(), 0u64);
    while at < file.len() {
        let n = atrest::record_len(file.get(at..at + 4)?.try_into().ok()?)?;
        let record = file.get(at + 4..at + 4 + n)?;
        let opened = opener.open(index, at as u64, record).ok()?;
        assert_eq!(opened.len(), atrest::record_plain_len(n));
        plain.extend(opened);
        at += 4 + n;
        index += 1;
    }
    Some(plain)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let cipher = if control & 1 == 0 { Cipher::XChaCha20Poly1305 } else { Cipher::Aes256Gcm };
    let (dek, kek) = ([7u8; 32], [9u8; 32]);
    let header = if control & 2 == 0 {
        Header::new(cipher, "rec", "k1", atrest::wrap(&kek, &dek, [1; 24]))
    } else {
        Header::legacy(cipher, "rec", "k1", atrest::wrap(&kek, &dek, [1; 24]))
    };
    let mut file = header.line();
    let mut sealer = Sealer::new(&header, &dek, [3; 16]);
    let mut records = Vec::new();
    for part in rest.split(|&b| b == 0xff).take(16) {
        records.push(sealer.seal(part));
    }
    // What happens to the file: nothing, records swapped or dropped, a cut, a flipped byte.
    let pick = |k: u8| (k as usize) % records.len().max(1);
    match (control >> 2) & 7 {
        1 if records.len() > 1 => {
            let (a, b) = (pick(rest.len() as u8), pick(control));
            records.swap(a, b);
        }
        2 if !records.is_empty() => {
            records.remove(pick(rest.len() as u8));
        }
        _ => {}
    }
    for r in &records {
        file.extend_from_slice(r);
    }
    let len = file.len();
    match (control >> 5) & 7 {
        1 => file.truncate(len - (rest.len() % 40).min(len)),
        2 => {
            let at = (rest.len() * 31) % len;
            file[at] ^= 0x20;
        }
        3 => file.extend_from_slice(&rest[..rest.len().min(8)]),
        _ => {}
    }
    let whole = atrest::open(&file, &dek, true).ok().map(|(p, _)| p);
    assert_eq!(by_records(&file, &dek), whole);
});
