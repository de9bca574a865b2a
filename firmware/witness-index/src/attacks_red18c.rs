//! Red-team attacks (red18c) on batched search extraction: two extractors of one recording
//! interleaved (the start-time `index_missing` sweep and the pipeline's Extract job both pick a
//! recording whose text is not indexed, as after a crash mid-extraction), and a crash between
//! them. Each passes while the hole it names is open; the fix flips its assertion.

use super::*;

fn index() -> (std::path::PathBuf, Index) {
    let dir = std::env::temp_dir().join(format!(
        "witness-index-red18c-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let idx = Index::open(&dir.join("index.sqlite")).unwrap();
    (dir, idx)
}

fn finished(idx: &Index) {
    idx.create_session("s1", "alice", "web01", Protocol::Ssh, None).unwrap();
    idx.create_recording("r1", "s1", "shell", "recordings/r1.cast").unwrap();
    let end = RecordingEnd {
        status: RecordingStatus::Completed,
        reason: None,
        bytes: 10,
        sha256: Some("ab".into()),
        duration: None,
        recovered: false,
    };
    idx.finish_recording("r1", &end).unwrap();
}

fn batch(at: f64) -> Vec<SearchChunk> {
    vec![SearchChunk {
        at,
        tokens: format!("t{}", at as u32),
        line_times: vec![at],
        line_steps: vec![vec![]],
        line_rects: vec![],
        sealed: vec![1],
    }]
}

fn rows(idx: &Index) -> Vec<f64> {
    let conn = idx.conn();
    let mut st = conn.prepare("SELECT at FROM cast_text WHERE recording_id = 'r1' ORDER BY at").unwrap();
    st.query_map([], |r| r.get::<_, f64>(0)).unwrap().map(|r| r.unwrap()).collect()
}

fn waiting(idx: &Index) -> bool {
    idx.recordings_without_text().unwrap().iter().any(|r| r.id == "r1")
}

/// Two extractors of one recording (A: the start sweep, B: the Extract job), interleaved: A's
/// last batch lands after B's whole run, and the recording is marked indexed with a chunk
/// twice (search shows the hit twice; nothing ever cleans it).
#[test]
fn red18c_two_extractors_interleaved_leave_duplicates_marked_indexed() {
    let (dir, idx) = index();
    finished(&idx);
    assert!(waiting(&idx));
    idx.start_text("r1").unwrap(); // A
    idx.add_text("r1", "s1", &batch(1.0)).unwrap(); // A
    idx.start_text("r1").unwrap(); // B: A's first batch deleted
    idx.add_text("r1", "s1", &batch(1.0)).unwrap(); // B
    idx.add_text("r1", "s1", &batch(2.0)).unwrap(); // B
    idx.text_done("r1").unwrap(); // B
    idx.add_text("r1", "s1", &batch(2.0)).unwrap(); // A
    idx.text_done("r1").unwrap(); // A
    assert!(!waiting(&idx), "marked indexed");
    // The hole: a chunk stored twice. A fix (an extraction owning the recording's text, e.g. a
    // generation checked by add_text/text_done) flips this to [1.0, 2.0].
    assert_eq!(rows(&idx), vec![1.0, 2.0, 2.0]);
    drop(idx);
    let _ = std::fs::remove_dir_all(dir);
}

/// B has stored its first batch when A starts (deleting it); B finishes and marks the recording
/// indexed; the box is killed while A is reading. After the restart the recording counts as
/// indexed and is never read again, with its first chunk missing from search.
#[test]
fn red18c_a_crash_between_two_extractors_leaves_text_missing_marked_indexed() {
    let (dir, idx) = index();
    finished(&idx);
    idx.start_text("r1").unwrap(); // B
    idx.add_text("r1", "s1", &batch(1.0)).unwrap(); // B
    idx.start_text("r1").unwrap(); // A: B's first batch deleted, text_indexed = 0
    idx.add_text("r1", "s1", &batch(2.0)).unwrap(); // B
    idx.text_done("r1").unwrap(); // B: text_indexed = 1
    // kill -9 here: A never finishes. After the restart:
    drop(idx);
    let idx = Index::open(&dir.join("index.sqlite")).unwrap();
    // The hole: not picked up again, and the first chunk is gone. The fix flips both.
    assert!(!waiting(&idx), "counted as indexed");
    assert_eq!(rows(&idx), vec![2.0], "text of the first batch missing");
    drop(idx);
    let _ = std::fs::remove_dir_all(dir);
}
