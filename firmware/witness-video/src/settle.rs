//! Which frames of a session video are worth reading for text, and where: a picture is read once
//! the screen changed and then stayed still for a while (typing, scrolling and video are not read
//! mid-change), and only the part that changed since the last picture read. Pure logic over grey
//! pictures, so it is tested without a video.

use std::time::Duration;

/// Side of the square blocks pictures are compared in.
pub const BLOCK: u32 = 16;
/// A pixel changed when its grey level moved by more than this (H.264 noise stays below).
const PIXEL_DELTA: u8 = 40;
/// A block changed when at least this many of its pixels did.
const BLOCK_PIXELS: u32 = 4;
/// Padding around a changed region, so words cut by a block edge are read whole.
const PAD: u32 = BLOCK;

/// A rectangle on the screen, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// A picture to read: when it appeared (the screen then stayed still), where it changed since the
/// last one read, and that part of it (grey, `region.width` bytes a row).
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub at: Duration,
    pub region: Region,
    pub crop: Vec<u8>,
}

/// Follows a video's frames and says when to read which part.
#[derive(Debug)]
pub struct Settler {
    width: u32,
    height: u32,
    settle: Duration,
    /// The picture on screen now, since when, and whether it was read.
    still: Option<(Vec<u8>, Duration, bool)>,
    /// The last picture read (`None`: nothing yet, compared as black).
    last_read: Option<Vec<u8>>,
}

impl Settler {
    /// Frames are `width`×`height` grey pictures, tightly packed; a picture is read after it
    /// stayed `settle`.
    pub fn new(width: u32, height: u32, settle: Duration) -> Self {
        Self { width, height, settle, still: None, last_read: None }
    }

    /// The next frame, shown from `at` on. Returns what to read, if a picture just settled.
    pub fn frame(&mut self, at: Duration, gray: &[u8]) -> Option<Read> {
        debug_assert_eq!(gray.len(), (self.width * self.height) as usize);
        let Some((image, since, read)) = &mut self.still else {
            self.still = Some((gray.to_vec(), at, false));
            return None;
        };
        let settled = !*read && at.saturating_sub(*since) >= self.settle;
        if changed_blocks(self.width, self.height, image, gray).is_none() {
            if settled {
                *read = true;
                return self.read();
            }
            return None;
        }
        // It changed: what was on screen before is read if it stayed long enough.
        let out = if settled { self.read() } else { None };
        self.still = Some((gray.to_vec(), at, false));
        out
    }

    /// The video ended: the last picture stayed until then.
    pub fn finish(&mut self) -> Option<Read> {
        match &mut self.still {
            Some((_, _, read)) if !*read => {
                *read = true;
                self.read()
            }
            _ => None,
        }
    }

    /// Reads the still picture: the part that changed since the last picture read.
    fn read(&mut self) -> Option<Read> {
        let (image, since, _) = self.still.as_ref()?;
        let black;
        let before = match &self.last_read {
            Some(b) => b,
            None => {
                black = vec![0u8; image.len()];
                &black
            }
        };
        let region = changed_blocks(self.width, self.height, before, image);
        let out = region.map(|r| {
            let r = pad(r, self.width, self.height);
            let mut crop = Vec::with_capacity((r.width * r.height) as usize);
            for y in r.y..r.y + r.height {
                let start = (y * self.width + r.x) as usize;
                crop.extend_from_slice(&image[start..start + r.width as usize]);
            }
            Read { at: *since, region: r, crop }
        });
        self.last_read = Some(image.clone());
        out
    }
}

/// The bounding box of the blocks that differ between two pictures (`None`: none do).
pub fn changed_blocks(width: u32, height: u32, a: &[u8], b: &[u8]) -> Option<Region> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for by in (0..height).step_by(BLOCK as usize) {
        let rows = BLOCK.min(height - by);
        for bx in (0..width).step_by(BLOCK as usize) {
            let cols = BLOCK.min(width - bx);
            let mut n = 0;
            'block: for y in by..by + rows {
                let start = (y * width + bx) as usize;
                let (ra, rb) = (&a[start..start + cols as usize], &b[start..start + cols as usize]);
                for (pa, pb) in ra.iter().zip(rb) {
                    if pa.abs_diff(*pb) > PIXEL_DELTA {
                        n += 1;
                        if n >= BLOCK_PIXELS {
                            break 'block;
                        }
                    }
                }
            }
            if n >= BLOCK_PIXELS {
                (x0, y0) = (x0.min(bx), y0.min(by));
                (x1, y1) = (x1.max(bx + cols), y1.max(by + rows));
            }
        }
    }
    (x0 != u32::MAX).then(|| Region { x: x0, y: y0, width: x1 - x0, height: y1 - y0 })
}

fn pad(r: Region, width: u32, height: u32) -> Region {
    let (x, y) = (r.x.saturating_sub(PAD), r.y.saturating_sub(PAD));
    let (x1, y1) = ((r.x + r.width + PAD).min(width), (r.y + r.height + PAD).min(height));
    Region { x, y, width: x1 - x, height: y1 - y }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 128;
    const H: u32 = 64;
    const SETTLE: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A white picture with dark rectangles (x, y, w, h).
    fn picture(rects: &[(u32, u32, u32, u32)]) -> Vec<u8> {
        let mut p = vec![255u8; (W * H) as usize];
        for &(x, y, w, h) in rects {
            for yy in y..y + h {
                for xx in x..x + w {
                    p[(yy * W + xx) as usize] = 0;
                }
            }
        }
        p
    }

    #[test]
    fn a_picture_is_read_once_it_stayed_still_and_only_where_it_changed() {
        let mut s = Settler::new(W, H, SETTLE);
        let blank = picture(&[]);
        // The first picture, held: read whole (compared with black), once.
        assert_eq!(s.frame(ms(0), &blank), None);
        assert_eq!(s.frame(ms(200), &blank), None, "not settled yet");
        let first = s.frame(ms(600), &blank).expect("settled");
        assert_eq!((first.at, first.region), (ms(0), Region { x: 0, y: 0, width: W, height: H }));
        assert_eq!(s.frame(ms(900), &blank), None, "read once");
        // A word appears at (40, 20): read after it stayed, only around it, at when it appeared.
        let word = picture(&[(40, 20, 20, 8)]);
        assert_eq!(s.frame(ms(1000), &word), None);
        let read = s.frame(ms(1600), &word).expect("settled");
        assert_eq!(read.at, ms(1000));
        assert_eq!(read.region, Region { x: 16, y: 0, width: 64, height: 48 });
        assert_eq!(read.crop.len(), (64 * 48) as usize);
        assert_eq!(read.crop[(20 * 64 + 24) as usize], 0, "the crop holds the word");
    }

    #[test]
    fn changes_that_never_settle_are_not_read_but_the_end_is() {
        let mut s = Settler::new(W, H, SETTLE);
        // A new picture every 100 ms (typing, scrolling): nothing is read meanwhile.
        for i in 0..20u32 {
            let p = picture(&[(i * 4, 0, 4, 16)]);
            assert_eq!(s.frame(ms(u64::from(i) * 100), &p), None, "frame {i}");
        }
        // A frame that changes after the last one stayed long enough: the last one is read.
        let settled = s.frame(ms(2500), &picture(&[(100, 40, 8, 8)])).expect("the picture of 1.9 s stayed 600 ms");
        assert_eq!(settled.at, ms(1900));
        // The video ends: its last picture is read too.
        let last = s.finish().expect("the end");
        assert_eq!(last.at, ms(2500));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn noise_below_the_thresholds_is_no_change() {
        let a = picture(&[(10, 10, 30, 30)]);
        let mut b = a.clone();
        for p in b.iter_mut().step_by(7) {
            *p = p.saturating_sub(30);
        }
        assert_eq!(changed_blocks(W, H, &a, &b), None);
        // Three strongly changed pixels in one block are not enough; four are.
        for i in 0..3 {
            b[(50 * W + 100 + i) as usize] = 0;
        }
        assert_eq!(changed_blocks(W, H, &a, &b), None);
        b[(51 * W + 100) as usize] = 0;
        assert_eq!(changed_blocks(W, H, &a, &b), Some(Region { x: 96, y: 48, width: 16, height: 16 }));
    }

    #[test]
    fn sizes_that_are_not_whole_blocks() {
        let (w, h) = (37, 21);
        let a = vec![0u8; (w * h) as usize];
        let mut b = a.clone();
        for i in 0..12 {
            b[(20 * w + 25 + i) as usize] = 255;
        }
        assert_eq!(changed_blocks(w, h, &a, &b), Some(Region { x: 16, y: 16, width: 21, height: 5 }));
    }
}
