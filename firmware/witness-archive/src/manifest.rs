//! The session manifest stored beside a session's recordings: the session, each recording with
//! its key and hash, and the session's audit events.

use serde::Serialize;

/// The manifest's format name.
pub const FORMAT: &str = "witness-manifest/1";

/// One recording as the session manifest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: String,
    pub channel: String,
    /// Its object key, once it has an upload job.
    pub key: Option<String>,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration: Option<f64>,
    pub recovered: bool,
    pub status: String,
    pub status_reason: Option<String>,
}

/// The manifest of one session, as pretty JSON.
pub fn session_manifest(
    box_id: &str,
    session: &impl Serialize,
    recordings: &[Entry],
    audit: &impl Serialize,
) -> Result<Vec<u8>, crate::ArchiveError> {
    let manifest = serde_json::json!({
        "format": FORMAT,
        "box_id": box_id,
        "session": session,
        "recordings": recordings,
        "audit": audit,
    });
    Ok(serde_json::to_vec_pretty(&manifest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_session_its_recordings_and_events() {
        let entry = Entry {
            id: "r1".into(),
            channel: "shell".into(),
            key: Some("b/2026-12-06/s1/r1.cast".into()),
            bytes: 42,
            sha256: Some("ab".into()),
            started_at: "2026-12-06T13:00:00Z".into(),
            ended_at: None,
            duration: Some(1.5),
            recovered: false,
            status: "uploaded".into(),
            status_reason: None,
        };
        let bytes = session_manifest(
            "b",
            &serde_json::json!({"id": "s1", "user": "alice"}),
            &[entry],
            &[serde_json::json!({"kind": "x"})],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["format"], FORMAT);
        assert_eq!(v["box_id"], "b");
        assert_eq!(v["session"]["user"], "alice");
        assert_eq!(v["recordings"][0]["id"], "r1");
        assert_eq!(v["recordings"][0]["key"], "b/2026-12-06/s1/r1.cast");
        assert_eq!(v["recordings"][0]["sha256"], "ab");
        assert_eq!(v["audit"][0]["kind"], "x");
    }
}
