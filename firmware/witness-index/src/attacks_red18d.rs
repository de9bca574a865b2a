//! Red-team attacks (red18d) on the text claim of index step 21: it covers a terminal
//! recording's batches (`start_text`, `add_text`, `text_done`), not a video's. Two readers of
//! one video (the daemon's reader thread and `witness index read-text ID`, or two such runs)
//! each store batches with [`Index::store_read_text`], which deletes everything from its own
//! `from` on, and the first to end marks the video read (`finish_read_text`). Each test passes
//! while the hole it names is open.

use super::*;
use crate::attacks_red18c::{batch, index, rows};

fn finished_video(idx: &Index) {
    idx.create_session("s1", "alice", "desk01", Protocol::Rdp, None).unwrap();
    idx.create_recording("r1", "s1", "video", "recordings/r1.mp4").unwrap();
    let end = RecordingEnd {
        status: RecordingStatus::Completed,
        reason: None,
        bytes: 10,
        sha256: Some("ab".into()),
        duration: Some(30.0),
        recovered: false,
    };
    idx.finish_recording("r1", &end).unwrap();
}

fn waiting(idx: &Index) -> bool {
    idx.videos_to_read().unwrap().iter().any(|r| r.id == "r1")
}

/// Reader A (the daemon) reads the whole video and marks it read; reader B (`index read-text`,
/// started before A's first batch, so from 0) stores its first batch after A ended, deleting
/// everything from 0 on, and is stopped (Ctrl-C). The video stays marked indexed with the text
/// of 10 s to 30 s gone from search, and is never read again: no claim refused B's late batch.
#[test]
fn red18d_two_video_readers_leave_a_video_marked_read_with_text_missing() {
    let (dir, idx) = index();
    finished_video(&idx);
    assert!(waiting(&idx));
    let b_from = idx.text_read_until("r1").unwrap();
    idx.store_read_text("r1", "s1", 0.0, 10.0, &batch(1.0), &[]).unwrap();
    idx.store_read_text("r1", "s1", 10.0, 20.0, &batch(11.0), &[]).unwrap();
    idx.store_read_text("r1", "s1", 20.0, 30.0, &batch(21.0), &[]).unwrap();
    idx.finish_read_text("r1", Ok(())).unwrap();
    assert_eq!(rows(&idx), vec![1.0, 11.0, 21.0]);
    // B's late first batch: accepted.
    idx.store_read_text("r1", "s1", b_from, 10.0, &batch(1.0), &[]).unwrap();
    assert_eq!(rows(&idx), vec![1.0], "A's text after 10 s deleted");
    assert!(!waiting(&idx), "still marked read: never read again");
    let indexed: i64 =
        idx.conn().query_row("SELECT text_indexed FROM recordings WHERE id = 'r1'", [], |r| r.get(0)).unwrap();
    assert_eq!(indexed, 1, "marked indexed with text missing");
    drop(idx);
    let _ = std::fs::remove_dir_all(dir);
}
