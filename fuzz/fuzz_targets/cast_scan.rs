//! Crash recovery scans whatever a crash left in a cast file: never panic, and the valid prefix
//! it reports must itself scan as valid and untruncated.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::cast;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = cast::scan(data) {
        assert!(s.valid_len <= data.len());
        let again = cast::scan(&data[..s.valid_len]).expect("a valid prefix scans");
        assert_eq!(again.valid_len, s.valid_len);
        assert!(!again.truncated);
        let _ = cast::parse(&data[..s.valid_len]);
    }
});
