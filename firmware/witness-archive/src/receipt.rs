//! What the upload step saw the store confirm on arrival, kept with its job for the verify
//! step: which store, which object, which checksum. Verify vouches for a stored recording only
//! on such a confirmation covering the same store, object and checksum; without one (a step done
//! by an older version, a store changed since, a confirmation that could not be kept) the
//! recording is uploaded again, and the store checks it on arrival again — the write-only way,
//! never a read-back the recorder's key may not be allowed.

use serde::{Deserialize, Serialize};

/// A store's confirmation of one stored recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    /// The store as described to the operator (`Store::describe`: no secret in it).
    pub store: String,
    /// The object key.
    pub key: String,
    /// The recording's SHA-256 (hex), as sealed.
    pub sha256: String,
    /// How the store confirmed it (the checksum or ETag it answered, or a read-back).
    pub check: String,
}

impl Confirmed {
    /// The text kept in the job's row.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether `saved` (a job's kept text, if any) confirms `sha256` stored as `key` in `store`.
    pub fn covers(saved: Option<&str>, store: &str, key: &str, sha256: &str) -> bool {
        saved
            .and_then(|t| serde_json::from_str::<Confirmed>(t).ok())
            .is_some_and(|c| c.store == store && c.key == key && c.sha256 == sha256 && !sha256.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_confirmation_of_the_same_object_in_the_same_store_covers_it() {
        let c = Confirmed {
            store: "s3 http://h/b".into(),
            key: "box/2026-01-01/s/r.cast".into(),
            sha256: "ab".repeat(32),
            check: "sha256 q83v on arrival".into(),
        };
        let text = c.to_text();
        let sha = "ab".repeat(32);
        assert!(Confirmed::covers(Some(&text), "s3 http://h/b", "box/2026-01-01/s/r.cast", &sha));
        assert!(!Confirmed::covers(None, "s3 http://h/b", "box/2026-01-01/s/r.cast", &sha), "nothing kept");
        assert!(!Confirmed::covers(Some(&text), "folder /other", "box/2026-01-01/s/r.cast", &sha), "another store");
        assert!(!Confirmed::covers(Some(&text), "s3 http://h/b", "box/2026-01-01/s/x.cast", &sha), "another object");
        assert!(!Confirmed::covers(Some(&text), "s3 http://h/b", "box/2026-01-01/s/r.cast", &"cd".repeat(32)));
        assert!(!Confirmed::covers(Some("{not json"), "s3 http://h/b", "box/2026-01-01/s/r.cast", &sha));
        let empty = Confirmed { sha256: String::new(), ..c };
        assert!(!Confirmed::covers(Some(&empty.to_text()), "s3 http://h/b", "box/2026-01-01/s/r.cast", ""));
    }
}
