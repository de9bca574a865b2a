//! Sealing and unsealing against a real software TPM (`swtpm`, a TPM 2.0 simulator speaking the
//! TPM command protocol over TCP): only the TPM that sealed a key opens it.

use witness_tpm::simulator::Simulator;
use witness_tpm::{Tpm, TpmError};

#[test]
fn a_sealed_key_opens_on_its_own_tpm_only() {
    let ours = Simulator::start();
    let lock = tempfile::NamedTempFile::new().unwrap();
    let tpm = Tpm::new(&ours.tcti()).with_lock(lock.path());
    let key: Vec<u8> = (0..32).map(|i| i * 7 + 1).collect();
    let blob = tpm.seal(&key).unwrap();
    assert!(witness_tpm::is_sealed(&blob));
    assert!(!blob.windows(key.len()).any(|w| w == key.as_slice()), "the key is not in the blob in clear");
    // Again and again: nothing is left loaded in the TPM between operations.
    for _ in 0..5 {
        assert_eq!(tpm.unseal(&blob).unwrap(), key);
    }
    // Another TPM (another seed) cannot load it.
    let other = Simulator::start();
    match Tpm::new(&other.tcti()).unseal(&blob) {
        Err(TpmError::Refused { step, .. }) => assert_eq!(step, "load the sealed key"),
        other => panic!("another TPM opened the key: {other:?}"),
    }
    // A changed byte in the TPM-encrypted part fails its integrity check.
    let mut bad = blob.clone();
    let last = bad.len() - 5;
    bad[last] ^= 1;
    assert!(matches!(tpm.unseal(&bad), Err(TpmError::Refused { .. })));
    // The TPM switched off: a clear error, not a hang; back on, the key opens again.
    let mut ours = ours;
    ours.stop();
    let err = tpm.unseal(&blob).unwrap_err();
    assert!(matches!(err, TpmError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().starts_with("the TPM (swtpm:host=127.0.0.1"), "{err}");
    ours.restart();
    assert_eq!(tpm.unseal(&blob).unwrap(), key);
}
