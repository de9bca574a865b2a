//! The key track reads the client's input PDUs (fast-path and slow-path): whatever the client
//! sends, it never panics, holds no more than its bound, and yields only text, newlines, tabs
//! and backspaces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_rdp_core::keys::{BACKSPACE, KeyTrack, MAX_PENDING};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let layouts = [0x0409, 0x0809, 0x0407, 0x0411];
    let mut track = KeyTrack::new(layouts[usize::from(mode & 3)]);
    if mode & 4 != 0 {
        track.set_io_channel(1003);
    }
    // Frames: a length byte, then that many bytes.
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        track.observe_client(&tail[..len]);
        rest = &tail[len..];
        let text = track.take();
        assert!(text.len() <= MAX_PENDING + 4);
        assert!(text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\t') || c == BACKSPACE), "{text:?}");
    }
});
