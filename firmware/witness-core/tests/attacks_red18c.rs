//! Red-team attacks (red18c) on the audit rollback anchor's pure comparison: objects planted
//! under the box's prefix in the store. Each passed while the hole it names was open (the verdict
//! was agreement); now each asserts the rollback is named, or at least not agreed to.

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
            store: None,
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
/// genuine checkpoints beyond the rolled-back head filled the fetch limit: the store's signed
/// checkpoints that show the rollback were never read, and the verdict was agreement (old code:
/// exit 0 of `witness audit --verify`, only a "passed over" note). Now the newest places are
/// read first, and what is left unread is never agreement.
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
    match c.verdict {
        Verdict::RolledBack { first, newest, local_head } => {
            assert_eq!((first.seq, newest.seq, local_head.map(|h| h.seq)), (3, 5, Some(2)));
        }
        v => panic!("the rollback is hidden: {v:?}"),
    }
    // Planted beyond the genuine ones instead: they are read first and crowd the genuine ones
    // out, and what is left unread makes the verdict unconfirmed, never agreement.
    let mut beyond: Vec<(String, Vec<u8>)> = objects.iter().take(5).cloned().collect();
    for n in 0..64u32 {
        beyond.push((format!("box/{FOLDER}/{:012}-{:064x}.json", 40, n), b"x".to_vec()));
    }
    assert!(
        matches!(run(kept, &beyond).verdict, Verdict::Unconfirmed { unread: 3, beyond_head: 67, .. }),
        "{:?}",
        run(kept, &beyond).verdict
    );
}

/// The recorder's key may `s3:PutObject`, and a PUT under an existing name replaces the object
/// (with Object Lock, a newer version, which is what a GET returns): whoever holds that key (it
/// is on the disk a rollback rewrites) writes any bytes over the store's checkpoints beyond the
/// rolled-back head, under their own names. Old code: passed over, and the verdict was
/// agreement. Now a checkpoint's name beyond the head counts against agreement whatever its
/// bytes: the verdict is unconfirmed, naming how many and up to which place.
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
    assert_eq!(c.verdict, Verdict::Unconfirmed { not_signed: 3, unread: 0, beyond_head: 3, newest_place: 5 });
    assert_eq!(c.passed_over.len(), 3);
}
