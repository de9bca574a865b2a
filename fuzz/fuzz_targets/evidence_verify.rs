//! `witness verify` reads bundles from anywhere: any manifest, signature, key and data must
//! give a report, never a panic, and never a pass for data the manifest does not describe.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::evidence;

fuzz_target!(|input: (Vec<u8>, String, String, Vec<u8>)| {
    let (manifest, sig, key, data) = input;
    let checks = evidence::verify(&manifest, &sig, &key, &data);
    assert!(!checks.is_empty());
});
