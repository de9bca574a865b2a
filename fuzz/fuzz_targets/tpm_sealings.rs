//! A sealed key file is read off the data partition: any bytes must give its labels or an error,
//! and replacing a sealing by label keeps the file parseable with the new sealing first.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = witness_tpm::labels(data);
    let Some((&cut, rest)) = data.split_first() else { return };
    let (file, sealing) = rest.split_at(usize::from(cut).min(rest.len()));
    if let Ok(out) = witness_tpm::with_sealing(file, sealing) {
        let labels = witness_tpm::labels(&out).expect("a file made by with_sealing parses");
        let new = witness_tpm::labels(sealing).expect("the sealing parsed");
        assert_eq!(labels.first(), new.first(), "the new sealing comes first");
        assert_eq!(labels.iter().filter(|l| Some(*l) == new.first()).count(), 1, "one sealing per label");
    }
});
