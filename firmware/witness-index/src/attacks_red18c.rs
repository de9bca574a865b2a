//! Red-team attacks (red18c) on batched search extraction: two extractors of one recording
//! interleaved (the start-time `index_missing` sweep and the pipeline's Extract job both pick a
//! recording whose text is not indexed, as after a crash mid-extraction), and a crash between
//! them. Each passed while the hole it names was open (old code: a chunk twice, and text missing on
//! a recording marked indexed); now each extraction holds a claim ([`Index::start_text`]) and
//! only the newest claim's batches and "done" count.

use super::*;

pub(crate) fn index() -> (std::path::PathBuf, Index) {
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
    finished_as(idx, Protocol::Ssh, "shell", "recordings/r1.cast", None);
}

/// Session `s1` with its one recording `r1` (of `kind`, at `path`) completed.
pub(crate) fn finished_as(idx: &Index, protocol: Protocol, kind: &str, path: &str, duration: Option<f64>) {
    idx.create_session("s1", "alice", "web01", protocol, None).unwrap();
    idx.create_recording("r1", "s1", kind, path).unwrap();
    let end = RecordingEnd {
        status: RecordingStatus::Completed,
        reason: None,
        bytes: 10,
        sha256: Some("ab".into()),
        duration,
        recovered: false,
    };
    idx.finish_recording("r1", &end).unwrap();
}

pub(crate) fn batch(at: f64) -> Vec<SearchChunk> {
    vec![SearchChunk {
        at,
        tokens: format!("t{}", at as u32),
        line_times: vec![at],
        line_steps: vec![vec![]],
        line_rects: vec![],
        sealed: vec![1],
    }]
}

pub(crate) fn rows(idx: &Index) -> Vec<f64> {
    let conn = idx.conn();
    let mut st = conn.prepare("SELECT at FROM cast_text WHERE recording_id = 'r1' ORDER BY at").unwrap();
    st.query_map([], |r| r.get::<_, f64>(0)).unwrap().map(|r| r.unwrap()).collect()
}

fn waiting(idx: &Index) -> bool {
    idx.recordings_without_text().unwrap().iter().any(|r| r.id == "r1")
}

fn taken_over(r: Result<()>) -> bool {
    matches!(r, Err(IndexError::TextTakenOver { ref recording_id }) if recording_id == "r1")
}

/// Two extractors of one recording (A: the start sweep, B: the Extract job), interleaved: A's
/// last batch came after B's whole run. Old code: marked indexed with a chunk twice (search
/// showed the hit twice). Now A's late batch and its "done" are refused: B took the claim over.
#[test]
fn red18c_two_extractors_interleaved_leave_duplicates_marked_indexed() {
    let (dir, idx) = index();
    finished(&idx);
    assert!(waiting(&idx));
    let a = idx.start_text("r1").unwrap();
    idx.add_text(&a, "s1", &batch(1.0)).unwrap();
    let b = idx.start_text("r1").unwrap(); // A's first batch deleted, the claim B's
    idx.add_text(&b, "s1", &batch(1.0)).unwrap();
    idx.add_text(&b, "s1", &batch(2.0)).unwrap();
    idx.text_done(&b).unwrap();
    assert!(taken_over(idx.add_text(&a, "s1", &batch(2.0))), "A's late batch refused");
    assert!(taken_over(idx.text_done(&a)), "A's done refused");
    assert!(!waiting(&idx), "marked indexed by B");
    assert_eq!(rows(&idx), vec![1.0, 2.0], "each chunk once");
    drop(idx);
    let _ = std::fs::remove_dir_all(dir);
}

/// B has stored its first batch when A starts (deleting it); B goes on and says done; the box
/// is killed while A is reading. Old code: after the restart the recording counted as indexed
/// with its first chunk missing, and was never read again. Now B's batch and "done" after A's
/// start are refused: the recording is not indexed, and the start sweep reads it again.
#[test]
fn red18c_a_crash_between_two_extractors_leaves_text_missing_marked_indexed() {
    let (dir, idx) = index();
    finished(&idx);
    let b = idx.start_text("r1").unwrap();
    idx.add_text(&b, "s1", &batch(1.0)).unwrap();
    let _a = idx.start_text("r1").unwrap(); // B's first batch deleted, text_indexed = 0
    assert!(taken_over(idx.add_text(&b, "s1", &batch(2.0))));
    assert!(taken_over(idx.text_done(&b)));
    // kill -9 here: A never finishes. After the restart:
    drop(idx);
    let idx = Index::open(&dir.join("index.sqlite")).unwrap();
    assert!(waiting(&idx), "not counted as indexed: read again");
    assert_eq!(rows(&idx), Vec::<f64>::new(), "nothing half-stored is searchable as if whole");
    // The next extraction stores the whole text.
    let c = idx.start_text("r1").unwrap();
    idx.add_text(&c, "s1", &batch(1.0)).unwrap();
    idx.add_text(&c, "s1", &batch(2.0)).unwrap();
    idx.text_done(&c).unwrap();
    assert!(!waiting(&idx));
    assert_eq!(rows(&idx), vec![1.0, 2.0]);
    drop(idx);
    let _ = std::fs::remove_dir_all(dir);
}
