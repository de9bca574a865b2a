//! Red-team attacks (red18c) on the audit rollback anchor's pure comparison: objects planted
//! under the box's prefix in the store. Each passes while the hole it names is open; the fix
//! flips its assertion.

use witness_core::audit_anchor::{self, FOLDER, Verdict};
use witness_core::evidence::{AuditCheckpoint, CHECKPOINT_FORMAT, SignedCheckpoint, fingerprint, signing_key};

/// The box's chain of `n` signed checkpoints.
fn chain(box_id: &str, n: u64) -> Vec<SignedCheckpoint> {
    let key = signing_key(&[1; 32]);
    let mut out: Vec<SignedCheckpoint> = Vec::new();
    for seq in 1..=n {
        let c = AuditCheckpoint {
            format: CHECKPOINT_FORMAT.into(),
            box_id: box_id.into(),
            last_id: seq as i64 * 10,
            hash: format!("{seq:064}"),
            at: format!("2026-12-07T10:{seq:02}:00Z"),
            key_fingerprint: fingerprint(&key.verifying_key()),
            seq: Some(seq),
            prev: out.last().map(SignedCheckpoint::hash),
        };
        out.push(c.sign(&key));
    }
    out
}

fn public() -> String {
    hex::encode(signing_key(&[1; 32]).verifying_key().as_bytes())
}

/// Lists the store and fetches what `to_fetch` asks for (at most 64, as the binary does).
fn run(local: &[SignedCheckpoint], objects: &[(String, Vec<u8>)]) -> audit_anchor::Comparison {
    let mut listed: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    listed.sort();
    let wanted = audit_anchor::to_fetch("box", local, &listed, 64);
    let fetched: Vec<(String, Vec<u8>)> = objects.iter().filter(|(k, _)| wanted.contains(k)).cloned().collect();
    audit_anchor::compare("box", &public(), local, &listed, &fetched)
}

/// 64 objects named like checkpoints (any bytes, no key needed) at a place at or before the
/// genuine checkpoints beyond the rolled-back head fill the fetch limit: the store's signed
/// checkpoints that show the rollback are never read, and the verdict is agreement (exit 0 of
/// `witness audit --verify`, only a "passed over" note).
#[test]
fn red18c_planted_names_fill_the_fetch_limit_and_hide_a_rollback() {
    let all = chain("box", 5);
    let kept = &all[..2];
    let mut objects: Vec<(String, Vec<u8>)> = all
        .iter()
        .enumerate()
        .map(|(i, c)| (audit_anchor::key("box", i as u64 + 1, c), serde_json::to_vec(c).unwrap()))
        .collect();
    // Without the planted objects the rollback is named.
    assert!(matches!(run(kept, &objects).verdict, Verdict::RolledBack { .. }));
    for n in 0..64u32 {
        objects.push((format!("box/{FOLDER}/{:012}-{:064x}.json", 1, n), b"x".to_vec()));
    }
    let c = run(kept, &objects);
    // The hole: a rollback the store holds the proof of is reported as agreement. A fix (a
    // comparison that read fewer than all the candidates is not agreement, or beyond-head places
    // read first and never crowded out) flips this to `RolledBack`.
    assert_eq!(c.verdict, Verdict::Agrees { store_newest: Some(2), not_sent: 0 }, "hole closed?");
    assert_eq!(c.passed_over.len(), 64);
}

/// The recorder's key may `s3:PutObject`, and a PUT under an existing name replaces the object
/// (with Object Lock, a newer version, which is what a GET returns): whoever holds that key (it
/// is on the disk a rollback rewrites) writes any bytes over the store's checkpoints beyond the
/// rolled-back head, under their own names. They are passed over, and the verdict is agreement.
#[test]
fn red18c_checkpoints_overwritten_under_their_own_names_hide_a_rollback() {
    let all = chain("box", 5);
    let kept = &all[..2];
    let objects: Vec<(String, Vec<u8>)> = all
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let bytes = if i < 2 { serde_json::to_vec(c).unwrap() } else { b"{}".to_vec() };
            (audit_anchor::key("box", i as u64 + 1, c), bytes)
        })
        .collect();
    let c = run(kept, &objects);
    // The hole: agreement. A fix (a name the store lists beyond the local head is a rollback
    // whatever its bytes, or at least not agreement) flips this.
    assert_eq!(c.verdict, Verdict::Agrees { store_newest: Some(2), not_sent: 0 }, "hole closed?");
    assert_eq!(c.passed_over.len(), 3);
}
