//! The audit checkpoints kept off the box, without I/O. Each signed checkpoint
//! ([`SignedCheckpoint`]) names its place in the box's chain of checkpoints (`seq`) and the hash
//! of the one before it (`prev`), and is also sent to the store under
//! `BOX/audit-checkpoints/SEQ-HASH.json` ([`key`]), where a rollback of the box's disk (the index
//! and its checkpoint file put back from an earlier, consistent copy) cannot reach it. [`compare`]
//! sets the local chain against what the store holds: a signed checkpoint of the box beyond the
//! local head is a rollback, one that differs from the local chain at a place both have a fork.
//! The store's names and contents come from a bucket others may write to: [`parse_key`] and
//! [`compare`] take any bytes, and an object that is not the box's signed checkpoint under its own
//! name is never believed. Nor is it passed over: a checkpoint's name the local chain does not
//! have at that place is evidence that such a checkpoint was sent (a rolled-back box's later
//! checkpoints overwritten under their own names, or crowded out of what is read by planted
//! names), so agreement needs every such name read and found the box's own; otherwise the
//! verdict is [`Verdict::Unconfirmed`]. What is read is the newest places first ([`to_fetch`]).

use crate::evidence::SignedCheckpoint;

/// The folder under the box's prefix in the store.
pub const FOLDER: &str = "audit-checkpoints";

/// Where a box's checkpoints go in the store.
pub fn prefix(box_id: &str) -> String {
    format!("{box_id}/{FOLDER}/")
}

/// The store key of checkpoint `seq`: its place and its hash, so a different checkpoint at the
/// same place (a rolled-back box signing again) is kept beside it, never over it.
pub fn key(box_id: &str, seq: u64, cp: &SignedCheckpoint) -> String {
    format!("{}{seq:012}-{}.json", prefix(box_id), cp.hash())
}

/// The place and hash a store key names, or `None` for a key that is not a checkpoint's.
pub fn parse_key(box_id: &str, key: &str) -> Option<(u64, String)> {
    let name = key.strip_prefix(&prefix(box_id))?.strip_suffix(".json")?;
    let (seq, hash) = name.split_once('-')?;
    if seq.len() != 12 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let seq: u64 = seq.parse().ok()?;
    (seq > 0).then(|| (seq, hash.to_owned()))
}

/// The place of the local checkpoint at `index` (0-based): its `seq`, or its line for one
/// signed before checkpoints were numbered.
fn place(index: usize) -> u64 {
    index as u64 + 1
}

/// Checks the local chain of checkpoints: each numbered one is at its place and names the one
/// before it. `Err` names the first that is not (checkpoints removed, added or reordered).
pub fn check_chain(local: &[SignedCheckpoint]) -> Result<(), String> {
    for (i, c) in local.iter().enumerate() {
        let Some(seq) = c.checkpoint.seq else { continue };
        if seq != place(i) {
            return Err(format!(
                "line {} of the checkpoints says it is checkpoint {seq}: checkpoints were removed, added or reordered",
                place(i)
            ));
        }
        let before = i.checked_sub(1).map(|b| local[b].hash());
        if c.checkpoint.prev != before {
            return Err(format!("checkpoint {seq} does not name the checkpoint before it: the chain was changed"));
        }
    }
    Ok(())
}

/// A checkpoint as the verdict names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub seq: u64,
    /// When it was signed.
    pub at: String,
    /// The newest audit event it covers.
    pub last_id: i64,
}

impl Named {
    fn of(seq: u64, c: &SignedCheckpoint) -> Self {
        Self { seq, at: c.checkpoint.at.clone(), last_id: c.checkpoint.last_id }
    }
}

/// What the store says about the local chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every signed checkpoint of the box the store holds is the local one at its place.
    /// `store_newest`: the newest place the store holds; `not_sent`: local checkpoints after it.
    Agrees { store_newest: Option<u64>, not_sent: u64 },
    /// The store holds signed checkpoints beyond the local head (`first` the earliest of them,
    /// `newest` the newest): what the local log had after its head was removed.
    RolledBack { first: Named, newest: Named, local_head: Option<Named> },
    /// At place `store.seq` the store holds a signed checkpoint the local chain does not (it has
    /// `local` there): the local chain was replaced from there on. `newest`: the store's newest
    /// signed checkpoint that is not the local chain's.
    Forked { store: Named, local: Named, newest: Named },
    /// No signed checkpoint of the box shows a rollback, but the store lists checkpoints' names
    /// the local chain does not have at their places that are not confirmed: read and not the
    /// box's signed checkpoint under its own name (`not_signed`, too large ones included), or
    /// left unread past the fetch limit (`unread`). `beyond_head` of them name places after the
    /// local head, up to `newest_place`. A rollback whose checkpoints were overwritten looks like
    /// this, as does a bucket someone wrote into: never agreement.
    Unconfirmed { not_signed: u64, unread: u64, beyond_head: u64, newest_place: u64 },
}

/// The comparison: the verdict, and the store keys passed over: under the box's prefix and not
/// named as a checkpoint (never sent by the box), or named as one and not its signed checkpoint
/// (those also make the verdict [`Verdict::Unconfirmed`] when nothing signed shows more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub verdict: Verdict,
    pub passed_over: Vec<String>,
}

/// Whether the store key `(seq, hash)` is the local checkpoint at that place.
fn is_local(local_hashes: &[String], seq: u64, hash: &str) -> bool {
    usize::try_from(seq - 1).ok().and_then(|i| local_hashes.get(i)).is_some_and(|h| h == hash)
}

/// The listed keys naming a checkpoint the local chain does not have at that place, with their
/// places.
fn candidates<'a>(box_id: &str, local: &[SignedCheckpoint], listed: &'a [String]) -> Vec<(u64, &'a String)> {
    let hashes: Vec<String> = local.iter().map(SignedCheckpoint::hash).collect();
    let mut other: Vec<(u64, &String)> = listed
        .iter()
        .filter_map(|k| parse_key(box_id, k).map(|(seq, hash)| (seq, hash, k)))
        .filter(|(seq, hash, _)| !is_local(&hashes, *seq, hash))
        .map(|(seq, _, k)| (seq, k))
        .collect();
    // The newest places first: planted names at early places never crowd out later ones.
    other.sort_by(|a, b| b.cmp(a));
    other.dedup();
    other
}

/// The listed keys worth reading: those naming a checkpoint the local chain does not have at
/// that place, newest place first, at most `limit` of them. What is left unread counts against
/// agreement in [`compare`].
pub fn to_fetch(box_id: &str, local: &[SignedCheckpoint], listed: &[String], limit: usize) -> Vec<String> {
    candidates(box_id, local, listed).into_iter().take(limit).map(|(_, k)| k.clone()).collect()
}

/// Compares the local chain with the store: `listed` is every key under [`prefix`], `fetched`
/// the keys [`to_fetch`] named with their bytes (an object too large to be a checkpoint is
/// given with no bytes). Only an object that is the box's checkpoint (its `box_id`, signed by
/// `public_key_hex`) under the name of its own place and hash counts as one; a checkpoint's name
/// that is neither the local chain's nor such an object, read or not, makes agreement
/// impossible ([`Verdict::Unconfirmed`]).
pub fn compare(
    box_id: &str,
    public_key_hex: &str,
    local: &[SignedCheckpoint],
    listed: &[String],
    fetched: &[(String, Vec<u8>)],
) -> Comparison {
    let hashes: Vec<String> = local.iter().map(SignedCheckpoint::hash).collect();
    let mut passed_over: Vec<String> =
        listed.iter().filter(|k| k.starts_with(&prefix(box_id)) && parse_key(box_id, k).is_none()).cloned().collect();
    let mut theirs: Vec<(u64, SignedCheckpoint)> = Vec::new();
    let (mut not_signed, mut unread, mut beyond_head, mut newest_place) = (0u64, 0u64, 0u64, 0u64);
    let head = local.len() as u64;
    for (seq, k) in candidates(box_id, local, listed) {
        let bytes = fetched.iter().find(|(f, _)| f == k).map(|(_, b)| b);
        let genuine = bytes.and_then(|bytes| {
            let hash = parse_key(box_id, k)?.1;
            let c: SignedCheckpoint = serde_json::from_slice(bytes).ok()?;
            let own = c.checkpoint.seq == Some(seq)
                && c.hash() == hash
                && c.checkpoint.box_id == box_id
                && c.verifies(public_key_hex);
            own.then_some(c)
        });
        match (bytes, genuine) {
            (_, Some(c)) => {
                theirs.push((seq, c));
                continue;
            }
            (Some(_), None) => {
                not_signed += 1;
                passed_over.push(k.clone());
            }
            (None, None) => unread += 1,
        }
        if seq > head {
            beyond_head += 1;
        }
        newest_place = newest_place.max(seq);
    }
    theirs.sort_by_key(|(seq, _)| *seq);
    let local_at = |seq: u64| usize::try_from(seq - 1).ok().and_then(|i| local.get(i)).map(|c| Named::of(seq, c));
    let verdict = match (theirs.first(), theirs.last()) {
        (Some((first, fc)), Some((newest, nc))) => {
            let (first_named, newest_named) = (Named::of(*first, fc), Named::of(*newest, nc));
            match local_at(*first) {
                Some(here) => Verdict::Forked { store: first_named, local: here, newest: newest_named },
                None => Verdict::RolledBack {
                    first: first_named,
                    newest: newest_named,
                    local_head: local.len().checked_sub(1).map(|i| Named::of(place(i), &local[i])),
                },
            }
        }
        _ if not_signed + unread > 0 => Verdict::Unconfirmed { not_signed, unread, beyond_head, newest_place },
        _ => {
            let store_newest = listed
                .iter()
                .filter_map(|k| parse_key(box_id, k))
                .filter(|(seq, hash)| is_local(&hashes, *seq, hash))
                .map(|(seq, _)| seq)
                .max();
            Verdict::Agrees { store_newest, not_sent: local.len() as u64 - store_newest.unwrap_or(0) }
        }
    };
    passed_over.sort();
    passed_over.dedup();
    Comparison { verdict, passed_over }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{AuditCheckpoint, CHECKPOINT_FORMAT, fingerprint, signing_key};

    fn chain(key_seed: u8, box_id: &str, n: u64, start: &[SignedCheckpoint]) -> Vec<SignedCheckpoint> {
        signed_again(key_seed, box_id, n, start, 0)
    }

    /// As [`chain`], the events it covers told apart by `events` (another log, signed again).
    fn signed_again(
        key_seed: u8,
        box_id: &str,
        n: u64,
        start: &[SignedCheckpoint],
        events: u8,
    ) -> Vec<SignedCheckpoint> {
        let key = signing_key(&[key_seed; 32]);
        let mut out = start.to_vec();
        for _ in 0..n {
            let seq = out.len() as u64 + 1;
            let c = AuditCheckpoint {
                format: CHECKPOINT_FORMAT.into(),
                box_id: box_id.into(),
                last_id: seq as i64 * 10 + i64::from(key_seed),
                hash: format!("{events:02}{seq:062}"),
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

    fn public(seed: u8) -> String {
        hex::encode(signing_key(&[seed; 32]).verifying_key().as_bytes())
    }

    /// What the store holds after `sent` was uploaded: keys and their bytes.
    fn store(box_id: &str, sent: &[SignedCheckpoint]) -> Vec<(String, Vec<u8>)> {
        sent.iter().enumerate().map(|(i, c)| (key(box_id, i as u64 + 1, c), serde_json::to_vec(c).unwrap())).collect()
    }

    /// Lists the store and fetches what [`to_fetch`] asks for, as the binary does.
    fn run(local: &[SignedCheckpoint], objects: &[(String, Vec<u8>)]) -> Comparison {
        let listed: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
        let wanted = to_fetch("box", local, &listed, 64);
        let fetched: Vec<(String, Vec<u8>)> = objects.iter().filter(|(k, _)| wanted.contains(k)).cloned().collect();
        compare("box", &public(1), local, &listed, &fetched)
    }

    #[test]
    fn a_chain_the_store_agrees_with_verifies_and_says_what_is_not_sent() {
        let all = chain(1, "box", 5, &[]);
        assert_eq!(check_chain(&all), Ok(()));
        let c = run(&all, &store("box", &all[..3]));
        assert_eq!(c.verdict, Verdict::Agrees { store_newest: Some(3), not_sent: 2 });
        assert!(c.passed_over.is_empty());
        let c = run(&all, &[]);
        assert_eq!(c.verdict, Verdict::Agrees { store_newest: None, not_sent: 5 });
    }

    #[test]
    fn a_consistent_rollback_is_named_by_the_checkpoints_the_store_holds_beyond_it() {
        let all = chain(1, "box", 5, &[]);
        let kept = &all[..2];
        assert_eq!(check_chain(kept), Ok(()), "a consistent earlier copy is a valid chain on its own");
        let c = run(kept, &store("box", &all));
        match c.verdict {
            Verdict::RolledBack { first, newest, local_head } => {
                assert_eq!((first.seq, newest.seq), (3, 5));
                assert_eq!(newest.at, all[4].checkpoint.at);
                assert_eq!(newest.last_id, all[4].checkpoint.last_id);
                assert_eq!(local_head.map(|h| h.seq), Some(2));
            }
            v => panic!("not named: {v:?}"),
        }
        // Rolled back to nothing at all.
        assert!(matches!(run(&[], &store("box", &all)).verdict, Verdict::RolledBack { local_head: None, .. }));
    }

    #[test]
    fn a_rolled_back_box_signing_again_forks_from_the_store() {
        let all = chain(1, "box", 5, &[]);
        // Put back to 2 checkpoints; the box then signs its own 3rd and 4th, sent beside the
        // store's (their keys carry their hash, so nothing is overwritten).
        let again = signed_again(1, "box", 2, &all[..2], 1);
        let mut objects = store("box", &all);
        objects.extend(store("box", &again));
        let c = run(&again, &objects);
        match c.verdict {
            Verdict::Forked { store, local, newest } => {
                assert_eq!((store.seq, local.seq, newest.seq), (3, 3, 5));
                assert_eq!(store.at, all[2].checkpoint.at);
            }
            v => panic!("not named: {v:?}"),
        }
    }

    #[test]
    fn what_is_not_the_boxs_signed_checkpoint_under_its_own_name_is_never_believed_nor_agreement() {
        let all = chain(1, "box", 2, &[]);
        let other_key = chain(2, "box", 4, &[]);
        let other_box = chain(1, "elsewhere", 4, &[]);
        let mut objects = store("box", &all);
        // A name under the box's prefix that is no checkpoint's: passed over, still agreement.
        objects.push((format!("box/{FOLDER}/notes.txt"), b"x".to_vec()));
        let c = run(&all, &objects);
        assert_eq!(c.verdict, Verdict::Agrees { store_newest: Some(2), not_sent: 0 });
        assert_eq!(c.passed_over, vec![format!("box/{FOLDER}/notes.txt")]);
        // Signed by another key, at places beyond the local head.
        objects.push((key("box", 3, &other_key[2]), serde_json::to_vec(&other_key[2]).unwrap()));
        // The box's key, another box's checkpoint, put under this box's prefix.
        objects.push((key("box", 4, &other_box[3]), serde_json::to_vec(&other_box[3]).unwrap()));
        // A genuine checkpoint under another place's name, and garbage under a checkpoint's name.
        let genuine_next = chain(1, "box", 1, &all)[2].clone();
        objects.push((
            format!("box/{FOLDER}/{:012}-{}.json", 7, genuine_next.hash()),
            serde_json::to_vec(&genuine_next).unwrap(),
        ));
        objects.push((format!("box/{FOLDER}/{:012}-{}.json", 9, "ab".repeat(32)), b"{not json".to_vec()));
        // Garbage at a place the local chain has, under another hash (a fork's overwritten name).
        objects.push((format!("box/{FOLDER}/{:012}-{}.json", 1, "cd".repeat(32)), b"{}".to_vec()));
        let c = run(&all, &objects);
        // None of them is believed (no rollback, no fork), and none is agreement either.
        assert_eq!(c.verdict, Verdict::Unconfirmed { not_signed: 5, unread: 0, beyond_head: 4, newest_place: 9 });
        assert_eq!(c.passed_over.len(), 6, "{:?}", c.passed_over);
        // The genuine one under its own name counts.
        objects.push((key("box", 3, &genuine_next), serde_json::to_vec(&genuine_next).unwrap()));
        assert!(matches!(run(&all, &objects).verdict, Verdict::RolledBack { first: Named { seq: 3, .. }, .. }));
    }

    #[test]
    fn names_left_unread_past_the_limit_are_not_agreement_and_the_newest_places_are_read_first() {
        let all = chain(1, "box", 5, &[]);
        let kept = &all[..2];
        let mut objects = store("box", &all);
        // Planted at early places: the genuine later checkpoints are read first all the same.
        for n in 0..100u32 {
            objects.push((format!("box/{FOLDER}/{:012}-{:064x}.json", 1, n), b"x".to_vec()));
        }
        match run(kept, &objects).verdict {
            Verdict::RolledBack { first, newest, .. } => assert_eq!((first.seq, newest.seq), (3, 5)),
            v => panic!("not named: {v:?}"),
        }
        // Planted beyond every genuine place: what shows the rollback is left unread, and the
        // verdict says so instead of agreeing.
        let mut beyond = store("box", &all);
        for n in 0..100u32 {
            beyond.push((format!("box/{FOLDER}/{:012}-{:064x}.json", 99, n), b"x".to_vec()));
        }
        assert_eq!(
            run(kept, &beyond).verdict,
            Verdict::Unconfirmed { not_signed: 64, unread: 39, beyond_head: 103, newest_place: 99 }
        );
        // A chain the store agrees with, and names planted at its own places: not agreement.
        assert!(matches!(run(&all, &objects).verdict, Verdict::Unconfirmed { unread: 36, beyond_head: 0, .. }));
        // An object too large to be a checkpoint is given with no bytes, and is not the box's.
        let listed: Vec<String> = store("box", &all).into_iter().map(|(k, _)| k).collect();
        let fetched = vec![(listed[4].clone(), Vec::new())];
        assert_eq!(
            compare("box", &public(1), kept, &listed, &fetched).verdict,
            Verdict::Unconfirmed { not_signed: 1, unread: 2, beyond_head: 3, newest_place: 5 }
        );
    }

    #[test]
    fn the_local_chain_names_a_checkpoint_removed_or_changed_in_the_middle() {
        let all = chain(1, "box", 4, &[]);
        let mut removed = all.clone();
        removed.remove(1);
        assert!(check_chain(&removed).unwrap_err().contains("line 2 of the checkpoints says it is checkpoint 3"));
        let mut swapped = all.clone();
        swapped[2] = signed_again(1, "box", 2, &all[..1], 1)[2].clone();
        assert!(
            check_chain(&swapped).unwrap_err().contains("checkpoint 3 does not name"),
            "{:?}",
            check_chain(&swapped)
        );
        // Checkpoints signed before they were numbered keep their place by line.
        let mut old = all[0].clone();
        old.checkpoint.seq = None;
        let on = chain(1, "box", 2, &[old]);
        assert_eq!(check_chain(&on), Ok(()));
    }

    #[test]
    fn keys_name_their_place_and_hash_and_nothing_else_parses() {
        let all = chain(1, "box", 1, &[]);
        let k = key("box", 1, &all[0]);
        assert_eq!(parse_key("box", &k), Some((1, all[0].hash())));
        assert_eq!(parse_key("other", &k), None);
        for bad in [
            format!("box/{FOLDER}/000000000000-{}.json", "a".repeat(64)),
            format!("box/{FOLDER}/00000000001-{}.json", "a".repeat(64)),
            format!("box/{FOLDER}/000000000001-{}.json", "A".repeat(64)),
            format!("box/{FOLDER}/000000000001-{}.json", "a".repeat(63)),
            format!("box/{FOLDER}/+00000000001-{}.json", "a".repeat(64)),
            format!("box/{FOLDER}/000000000001-{}", "a".repeat(64)),
        ] {
            assert_eq!(parse_key("box", &bad), None, "{bad}");
        }
    }
}
