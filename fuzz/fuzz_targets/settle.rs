//! Arbitrary grey pictures of an arbitrary size at arbitrary times (what a decoded video hands
//! the settler, from a recording nobody vouches for), cut into the lines the reader gives
//! Tesseract: no panic, every part inside the picture with a crop of its size and a time already
//! seen, every line inside its part.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use witness_video::settle::Settler;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_at_checked(3) else { return };
    // Small sizes: many frames per input, and every edge case of blocks cut short.
    let (w, h) = (u32::from(head[0] % 70) + 1, u32::from(head[1] % 70) + 1);
    let settle = Duration::from_millis(u64::from(head[2]) * 8);
    let mut s = Settler::new(w, h, settle);
    let mut at = Duration::ZERO;
    // Each frame: a step in time (one byte, ×10 ms), then its pixels, the last one cut short
    // (a frame of another size is ignored).
    let size = (w * h) as usize;
    let check = |reads: Vec<witness_video::settle::Read>, at: Duration| {
        for r in reads {
            let g = r.region;
            assert!(g.width > 0 && g.height > 0 && g.x + g.width <= w && g.y + g.height <= h, "{g:?} in {w}x{h}");
            assert_eq!(r.crop.len(), (g.width * g.height) as usize);
            assert!(r.at <= at);
            for line in witness_core::ocr_lines::split(&r.sheet_region()) {
                let [x, y, lw, lh] = line.ink;
                assert!(
                    lw > 0 && lh > 0 && x >= g.x && y >= g.y && x + lw <= g.x + g.width && y + lh <= g.y + g.height
                );
            }
        }
    };
    for frame in rest.chunks(size + 1) {
        let (step, pixels) = frame.split_first().expect("chunks are never empty");
        at += Duration::from_millis(u64::from(*step) * 10);
        let reads = s.frame(at, pixels);
        check(reads, at);
        if let Some(p) = s.picture() {
            assert_eq!(p.len(), size);
        }
    }
    let reads = s.finish();
    check(reads, at);
});
