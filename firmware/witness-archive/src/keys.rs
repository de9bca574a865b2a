//! Object keys: a recording, its manifest and signature, and its session's manifest, grouped by
//! box and day so boxes can share one bucket.

/// What a recording file holds, told by its name (one place, not a guess per caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SSH: asciicast (or raw frames) in encrypted records, `.cast`.
    Cast,
    /// RDP: H.264 fMP4 video, `.mp4`.
    Mp4,
}

impl Format {
    /// The format of the recording file at `path` (relative or absolute).
    pub fn of_path(path: &str) -> Self {
        if path.ends_with(".mp4") { Self::Mp4 } else { Self::Cast }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Cast => "cast",
            Self::Mp4 => "mp4",
        }
    }
}

/// `started_at`'s day (`YYYY-MM-DD`), or all of it when shorter.
fn day(started_at: &str) -> &str {
    started_at.get(..10).unwrap_or(started_at)
}

/// Where a recording goes: `BOX/DAY/SESSION/RECORDING.EXT`.
pub fn object_key(box_id: &str, started_at: &str, session_id: &str, recording_id: &str, format: Format) -> String {
    format!("{box_id}/{}/{session_id}/{recording_id}.{}", day(started_at), format.extension())
}

/// A recording's key without its extension: where its manifest and signature go.
pub fn key_base(key: &str) -> &str {
    key.strip_suffix(".cast").or_else(|| key.strip_suffix(".mp4")).unwrap_or(key)
}

/// Where a session's manifest goes: beside its recordings.
pub fn session_manifest_key(box_id: &str, started_at: &str, session_id: &str) -> String {
    format!("{box_id}/{}/{session_id}/manifest.json", day(started_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_by_box_day_and_session() {
        let k = object_key("box1", "2026-12-06T13:00:00Z", "s1", "r1", Format::of_path("recordings/x/r1.mp4"));
        assert_eq!(k, "box1/2026-12-06/s1/r1.mp4");
        assert_eq!(key_base(&k), "box1/2026-12-06/s1/r1");
        let k = object_key("box1", "2026-12-06T13:00:00Z", "s1", "r2", Format::of_path("r2.cast"));
        assert_eq!(key_base(&k), "box1/2026-12-06/s1/r2");
        assert_eq!(session_manifest_key("box1", "2026-12-06T13:00:00Z", "s1"), "box1/2026-12-06/s1/manifest.json");
    }

    #[test]
    fn a_short_or_odd_start_time_does_not_panic() {
        assert_eq!(object_key("b", "2026", "s", "r", Format::Cast), "b/2026/s/r.cast");
        // A multi-byte character across byte 10 is not cut inside.
        assert_eq!(object_key("b", "2026-12-0é7", "s", "r", Format::Cast), "b/2026-12-0é7/s/r.cast");
        assert_eq!(key_base("no-extension"), "no-extension");
    }
}
