//! Red-team attacks (red18d) on the text claim of index step 21: it covered a terminal
//! recording's batches (`start_text`, `add_text`, `text_done`), not a video's. Two readers of
//! one video (the daemon's reader thread and `witness index read-text ID`, or two such runs)
//! each stored batches with [`Index::store_read_text`], which deletes everything from its own
//! `from` on, and the first to end marked the video read (`finish_read_text`). Closed: a video's
//! reading takes the same claim ([`Index::start_read_text`]); its batches and its end are
//! refused once a later reader took it over. The test is flipped to assert the refusal.

use super::*;
use crate::attacks_red18c::{batch, finished_as, index, rows};

fn taken_over(r: Result<()>) -> bool {
    matches!(r, Err(IndexError::TextTakenOver { ref recording_id }) if recording_id == "r1")
}

fn finished_video(idx: &Index) {
    finished_as(idx, Protocol::Rdp, "video", "recordings/r1.mp4", Some(30.0));
}

fn waiting(idx: &Index) -> bool {
    idx.videos_to_read().unwrap().iter().any(|r| r.id == "r1")
}

/// Reader A (the daemon) reads the whole video and marks it read; reader B (`index read-text`,
/// started before A's first batch, so from 0) stores its first batch after A ended, deleting
/// everything from 0 on, and is stopped (Ctrl-C). Old code: the video stayed marked indexed with
/// the text of 10 s to 30 s gone from search, never read again. Now whichever reader claimed
/// last is the only one whose batches and end count: B claimed after A, so A's batches are
/// refused, B's stand, and B stopped leaves the video waiting, not read; A claimed after B, so
/// B's late batch is refused and A's whole text stands.
#[test]
fn red18d_two_video_readers_leave_a_video_marked_read_with_text_missing() {
    let (dir, idx) = index();
    finished_video(&idx);
    assert!(waiting(&idx));
    // B claims after A, before A's first batch.
    let (a, _) = idx.start_read_text("r1").unwrap();
    let (b, b_from) = idx.start_read_text("r1").unwrap();
    assert_eq!(b_from, 0.0);
    assert!(taken_over(idx.store_read_text(&a, "s1", 0.0, 10.0, &batch(1.0), &[])));
    assert!(taken_over(idx.finish_read_text(&a)));
    idx.store_read_text(&b, "s1", b_from, 10.0, &batch(1.0), &[]).unwrap();
    assert_eq!(rows(&idx), vec![1.0]);
    assert!(waiting(&idx), "B stopped after its first batch: read again, from 10 s");
    assert_eq!(idx.start_read_text("r1").unwrap().1, 10.0);
    // A claims after B: B's late batch from 0 deletes nothing.
    idx.conn().execute("DELETE FROM cast_text", []).unwrap();
    idx.conn().execute("UPDATE recordings SET text_read_until = 0, text_state = NULL", []).unwrap();
    let (b, b_from) = idx.start_read_text("r1").unwrap();
    let (a, a_from) = idx.start_read_text("r1").unwrap();
    assert_eq!((a_from, b_from), (0.0, 0.0));
    idx.store_read_text(&a, "s1", 0.0, 10.0, &batch(1.0), &[]).unwrap();
    idx.store_read_text(&a, "s1", 10.0, 20.0, &batch(11.0), &[]).unwrap();
    idx.store_read_text(&a, "s1", 20.0, 30.0, &batch(21.0), &[]).unwrap();
    idx.finish_read_text(&a).unwrap();
    assert!(taken_over(idx.store_read_text(&b, "s1", b_from, 10.0, &batch(1.0), &[])));
    assert_eq!(rows(&idx), vec![1.0, 11.0, 21.0], "A's text whole");
    assert!(!waiting(&idx), "read");
    // A failure said by a reader taken over does not undo a video read to its end.
    idx.read_text_failed("r1", "stopped").unwrap();
    let (state, indexed): (String, i64) = idx
        .conn()
        .query_row("SELECT text_state, text_indexed FROM recordings WHERE id = 'r1'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((state.as_str(), indexed), ("done", 1));
    drop(idx);
    let _ = std::fs::remove_dir_all(dir);
}
