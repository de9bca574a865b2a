//! `witness verify` reads bundles from anywhere: any manifest, signature, key and data must
//! give a report, never a panic, and never a pass for data the manifest does not describe.
//! The same bytes as a session manifest over the recording manifest give a report too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::evidence;

fuzz_target!(|input: (Vec<u8>, String, String, Vec<u8>)| {
    let (manifest, sig, key, data) = input;
    let checks = evidence::verify(&manifest, &sig, &key, &data);
    assert!(!checks.is_empty());
    let session = evidence::verify_session(&data, &sig, &key, &[("r".to_owned(), manifest)]);
    assert!(!session.is_empty());
    // Nothing passes without a signature that verifies over the session manifest.
    assert!(session.iter().any(|c| !c.ok) || evidence::public_key(&key).is_some());
});
