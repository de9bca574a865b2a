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

/// The boot-state binding: a key sealed with a PCR policy opens while the PCRs hold the sealed
/// values, and no more once one of them is extended (another boot chain or root measured), nor
/// with the empty password that a policy-less object would take. A sealing made ahead for a
/// predicted state (the update's new slot) opens once the TPM is in that state.
#[test]
fn a_key_sealed_to_a_pcr_state_opens_in_that_state_only() {
    let mut sim = Simulator::start();
    let lock = tempfile::NamedTempFile::new().unwrap();
    let tpm = Tpm::new(&sim.tcti()).with_lock(lock.path());
    let key: Vec<u8> = (0..32).map(|i| 255 - i).collect();
    let now = tpm.pcrs(&[15, 0, 7]).unwrap();
    assert_eq!(now.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [0, 7, 15]);
    let slot_a = witness_tpm::PcrPolicy { label: "a".into(), values: now.clone() };
    let file = tpm.seal_to(&key, &slot_a).unwrap();
    assert!(!file.windows(key.len()).any(|w| w == key.as_slice()));
    assert_eq!(tpm.unseal(&file).unwrap(), key);
    assert_eq!(tpm.unseal(&file).unwrap(), key, "twice: no session left behind in the way");

    // Without the policy (a plain load and unseal, empty password), the TPM refuses.
    let v1 = {
        let sealing = &file[b"witness-tpm/2\n".len()..];
        let rest = &sealing[1 + usize::from(sealing[0])..];
        let rest = &rest[1 + usize::from(rest[0])..];
        let mut v1 = b"witness-tpm/1\n".to_vec();
        v1.extend_from_slice(rest);
        v1
    };
    assert!(tpm.unseal(&v1).is_err(), "a policy-bound key opened with the empty password");

    // Sealed ahead for the state after a measurement of slot b's root.
    let event = [0xb5u8; 32];
    let mut predicted = now.clone();
    predicted[2].1 = witness_tpm::extended(&predicted[2].1, &event);
    let slot_b = witness_tpm::PcrPolicy { label: "b".into(), values: predicted };
    let file = witness_tpm::with_sealing(&file, &tpm.seal_to(&key, &slot_b).unwrap()).unwrap();
    assert_eq!(witness_tpm::labels(&file).unwrap(), ["b", "a"]);

    tpm.extend(15, &event).unwrap();
    let after = tpm.pcrs(&[0, 7, 15]).unwrap();
    assert_eq!(after, slot_b.values, "the prediction is what the TPM computes");
    // Only slot b's sealing opens now; slot a's alone does not.
    assert_eq!(tpm.unseal(&file).unwrap(), key);
    let only_a = tpm.seal_to(&key, &slot_a);
    let only_a = only_a.unwrap();
    match tpm.unseal(&only_a) {
        Err(TpmError::Policy { pcrs, labels, .. }) => {
            assert_eq!(pcrs, "sha256:0,7,15");
            assert_eq!(labels, "sealed for: a");
        }
        other => panic!("a key sealed to the old PCR state opened after an extend: {other:?}"),
    }
    // Extended once more (measured twice, or another root): nothing opens, and it says why.
    tpm.extend(15, &event).unwrap();
    let err = tpm.unseal(&file).unwrap_err();
    assert!(matches!(err, TpmError::Policy { .. }), "{err:?}");
    assert!(err.to_string().contains("will not open the key in this boot state"), "{err}");
    // The TPM keeps working: no session left loaded by the failures, and no dictionary-attack
    // lockout after many (swtpm locks out after 3 authorization failures by default).
    for _ in 0..8 {
        assert!(matches!(tpm.unseal(&file), Err(TpmError::Policy { .. })));
    }
    assert_eq!(tpm.unseal(&tpm.seal(&key).unwrap()).unwrap(), key);
    // Power cut again and again (no orderly shutdown: the TPM counts each as a possible attack
    // on keys under dictionary-attack protection): the next boot in slot a's state still opens.
    for _ in 0..5 {
        sim.restart();
        let _ = tpm.unseal(&file);
    }
    assert_eq!(tpm.unseal(&only_a).unwrap(), key, "locked out after power cuts");
}

/// A device node that cannot be opened says why (the tools only say they could not load the TCTI):
/// missing, or refused by permissions or a sandbox's device list.
#[test]
fn an_unreachable_device_says_why() {
    let err = Tpm::new("device:/nonexistent/tpmrm9").pcrs(&[0]).unwrap_err();
    assert!(matches!(err, TpmError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("(opening /nonexistent/tpmrm9: No such file or directory"), "{err}");
}
