//! `audit --verify` reads the box's checkpoints back from a bucket others may write to: any keys
//! and any bytes under them give a comparison, never a panic; nothing unsigned by the box's key
//! makes a rollback or a fork of a genuine local chain, and a checkpoint's name that is not the
//! local chain's is never agreement.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::audit_anchor::{self, Verdict};
use witness_core::evidence::{AuditCheckpoint, CHECKPOINT_FORMAT, SignedCheckpoint, fingerprint, signing_key};

fuzz_target!(|input: (u8, Vec<(String, Vec<u8>)>, Vec<(u16, Vec<u8>)>)| {
    let (n, named, placed) = input;
    let key = signing_key(&[5; 32]);
    let public: String = key.verifying_key().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut local: Vec<SignedCheckpoint> = Vec::new();
    for seq in 1..=u64::from(n % 4) {
        let c = AuditCheckpoint {
            format: CHECKPOINT_FORMAT.into(),
            box_id: "box".into(),
            last_id: seq as i64,
            hash: "00".repeat(32),
            at: "t".into(),
            key_fingerprint: fingerprint(&key.verifying_key()),
            seq: Some(seq),
            prev: local.last().map(SignedCheckpoint::hash),
            store: None,
        };
        local.push(c.sign(&key));
    }
    // Anything under any name, and anything under a well-formed checkpoint name.
    let mut objects: Vec<(String, Vec<u8>)> = named.into_iter().take(16).collect();
    for (seq, bytes) in placed.into_iter().take(16) {
        // Named by its own hash when it parses, so the name holds and the signature is what counts.
        let hash = serde_json::from_slice::<SignedCheckpoint>(&bytes).map(|c| c.hash()).unwrap_or_else(|_| "ab".repeat(32));
        objects.push((format!("{}{:012}-{hash}.json", audit_anchor::prefix("box"), seq), bytes));
    }
    for (k, _) in &objects {
        let _ = audit_anchor::parse_key("box", k);
    }
    let listed: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    let wanted = audit_anchor::to_fetch("box", &local, &listed, 64);
    let fetched: Vec<(String, Vec<u8>)> = objects.into_iter().filter(|(k, _)| wanted.contains(k)).collect();
    let c = audit_anchor::compare("box", &public, &local, &listed, &fetched);
    assert!(
        matches!(c.verdict, Verdict::Agrees { .. } | Verdict::Unconfirmed { .. }),
        "unsigned bytes made a rollback or a fork: {:?}",
        c.verdict
    );
    let hashes: Vec<String> = local.iter().map(SignedCheckpoint::hash).collect();
    let foreign = listed.iter().filter_map(|k| audit_anchor::parse_key("box", k)).any(|(seq, hash)| {
        usize::try_from(seq - 1).ok().and_then(|i| hashes.get(i)) != Some(&hash)
    });
    assert_eq!(foreign, matches!(c.verdict, Verdict::Unconfirmed { .. }), "{:?}", c.verdict);
    assert_eq!(audit_anchor::check_chain(&local), Ok(()));
});
