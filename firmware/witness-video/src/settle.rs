//! Which frames of a session video are worth reading for text, and where: a picture is read once
//! the screen changed and then stayed still for a while (typing, scrolling and video are not read
//! mid-change), and only the parts that changed since the last picture read — each group of
//! changed blocks on its own (a window's straight borders are no part of any), a scrolled area
//! only for the rows the scroll brought in. A part whose pixels were read before (a window
//! switched back) is given again with its new time: every time text is shown is a time it is
//! found at (the reader's line cache makes reading it again cheap). Pure logic over grey
//! pictures, so it is
//! tested without a video (arbitrary pictures included: `arbitrary_pictures_…`).

use std::time::Duration;

/// Side of the square blocks pictures are compared in.
pub const BLOCK: u32 = 16;
/// A pixel changed when its grey level moved by more than this (H.264 noise stays below).
const PIXEL_DELTA: u8 = 40;
/// A block changed when at least this many of its pixels did.
const BLOCK_PIXELS: u32 = 4;
/// Padding around a changed region, so words cut by a block edge are read whole.
const PAD: u32 = BLOCK;
/// A scroll is looked for over at least this many rows in common (shorter overlaps match by
/// chance).
const MIN_OVERLAP: u32 = 2 * BLOCK;
/// Blocks in a row holding only a straight line that make an edge (a window's border), not text.
const EDGE_RUN: usize = 4;
/// Columns a row is cut into when looking for a scroll.
const STRIPS: usize = 16;
/// Shifts compared column by column, of those whose rows' totals fit best.
const CANDIDATES: usize = 24;

/// A rectangle on the screen, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// A part of a picture to read: when the picture appeared (the screen then stayed still), where
/// it changed since the last one read, and that part of it (grey, `region.width` bytes a row).
/// One settled picture gives any number of them, all with its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub at: Duration,
    pub region: Region,
    pub crop: Vec<u8>,
}

impl Read {
    /// The part to read, as a sheet for Tesseract takes it.
    pub fn sheet_region(&self) -> witness_core::ocr::Region {
        let Region { x, y, width, height } = self.region;
        witness_core::ocr::Region { x, y, width, height, gray: self.crop.clone() }
    }
}

/// Follows a video's frames and says when to read which parts.
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

    /// The next frame, shown from `at` on. Returns what to read, if a picture just settled
    /// (empty otherwise). A frame of another size than the video's is ignored.
    pub fn frame(&mut self, at: Duration, gray: &[u8]) -> Vec<Read> {
        if gray.len() != (self.width as usize) * (self.height as usize) {
            return Vec::new();
        }
        let Some((image, since, read)) = &mut self.still else {
            self.still = Some((gray.to_vec(), at, false));
            return Vec::new();
        };
        let settled = !*read && at.saturating_sub(*since) >= self.settle;
        if !differs(self.width, self.height, image, gray) {
            if settled {
                *read = true;
                return self.read();
            }
            return Vec::new();
        }
        // It changed: what was on screen before is read if it stayed long enough.
        let out = if settled { self.read() } else { Vec::new() };
        self.still = Some((gray.to_vec(), at, false));
        out
    }

    /// The pictures' width and height.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The last picture read (for its timeline thumbnail), `None` before the first.
    pub fn picture(&self) -> Option<&[u8]> {
        self.last_read.as_deref()
    }

    /// The video ended: the last picture stayed until then.
    pub fn finish(&mut self) -> Vec<Read> {
        match &mut self.still {
            Some((_, _, read)) if !*read => {
                *read = true;
                self.read()
            }
            _ => Vec::new(),
        }
    }

    /// Reads the still picture: the parts that changed since the last picture read.
    fn read(&mut self) -> Vec<Read> {
        let Some((image, since, _)) = self.still.as_ref() else { return Vec::new() };
        let (w, h) = (self.width, self.height);
        let black;
        let before = match &self.last_read {
            Some(b) => b,
            None => {
                black = vec![0u8; image.len()];
                &black
            }
        };
        let mut grid = Grid::changed(w, h, before, image);
        // A scrolled area: compared with the last picture moved by the scroll, only the rows it
        // brought in (and whatever else changed) differ.
        let mut moved = None;
        if let Some(bbox) = grid.bbox()
            && let Some(shift) = scroll(w, h, before, image, bbox)
        {
            let m = shifted(w, before, bbox, shift);
            let after = Grid::changed(w, h, &m, image);
            if after.count() * 2 <= grid.count() {
                grid = after;
                moved = Some(m);
            }
        }
        // What the grid was compared with: the rows of each group that changed are found in it.
        let base = moved.as_deref().unwrap_or(before);
        // A block without contrast holds no text (a background, a cleared line): not read.
        grid.keep_contrasted(image);
        grid.drop_edges(image);
        let mut out = Vec::new();
        for r in grid.groups() {
            let r = pad(r, w, h, base, image);
            let mut crop = Vec::with_capacity((r.width * r.height) as usize);
            for y in r.y..r.y + r.height {
                let start = (y * w + r.x) as usize;
                crop.extend_from_slice(&image[start..start + r.width as usize]);
            }
            out.push(Read { at: *since, region: r, crop });
        }
        self.last_read = Some(image.clone());
        out
    }
}

/// Which blocks differ between two pictures, row by row of blocks.
#[derive(Debug, Clone, PartialEq)]
struct Grid {
    cols: u32,
    rows: u32,
    width: u32,
    height: u32,
    changed: Vec<bool>,
}

impl Grid {
    fn changed(width: u32, height: u32, a: &[u8], b: &[u8]) -> Self {
        let (cols, rows) = (width.div_ceil(BLOCK), height.div_ceil(BLOCK));
        let mut changed = vec![false; (cols * rows) as usize];
        for (row, by) in (0..height).step_by(BLOCK as usize).enumerate() {
            let n = BLOCK.min(height - by);
            for (col, bx) in (0..width).step_by(BLOCK as usize).enumerate() {
                let m = BLOCK.min(width - bx);
                changed[row * cols as usize + col] = block_changed(width, a, b, bx, by, m, n);
            }
        }
        Self { cols, rows, width, height, changed }
    }

    /// Forgets the changed blocks that are flat in `picture` (all grey levels within
    /// [`PIXEL_DELTA`]): no text to read there.
    fn keep_contrasted(&mut self, picture: &[u8]) {
        for row in 0..self.rows {
            let by = row * BLOCK;
            for col in 0..self.cols {
                let i = (row * self.cols + col) as usize;
                if !self.changed[i] {
                    continue;
                }
                let bx = col * BLOCK;
                let (m, n) = (BLOCK.min(self.width - bx), BLOCK.min(self.height - by));
                let (mut lo, mut hi) = (u8::MAX, 0u8);
                for y in by..by + n {
                    let start = (y * self.width + bx) as usize;
                    for &p in &picture[start..start + m as usize] {
                        (lo, hi) = (lo.min(p), hi.max(p));
                    }
                }
                self.changed[i] = hi - lo > PIXEL_DELTA;
            }
        }
    }

    fn count(&self) -> usize {
        self.changed.iter().filter(|&&c| c).count()
    }

    fn row(&self, r: u32) -> &[bool] {
        &self.changed[(r * self.cols) as usize..((r + 1) * self.cols) as usize]
    }

    /// The pixels spanned by the changed blocks of rows `r0..r1`.
    fn span(&self, r0: u32, r1: u32) -> Option<Region> {
        let (mut c0, mut c1, mut rows0, mut rows1) = (u32::MAX, 0, u32::MAX, 0);
        for r in r0..r1 {
            for (c, &changed) in self.row(r).iter().enumerate() {
                if changed {
                    (c0, c1) = (c0.min(c as u32), c1.max(c as u32 + 1));
                    (rows0, rows1) = (rows0.min(r), rows1.max(r + 1));
                }
            }
        }
        (c0 != u32::MAX).then(|| {
            let (x0, y0) = (c0 * BLOCK, rows0 * BLOCK);
            let (x1, y1) = ((c1 * BLOCK).min(self.width), (rows1 * BLOCK).min(self.height));
            Region { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }
        })
    }

    fn bbox(&self) -> Option<Region> {
        self.span(0, self.rows)
    }

    /// Drops the changed blocks that only hold a straight line — every row alike (an upright
    /// edge) or every column alike (a level one) — in a run of at least [`EDGE_RUN`] such blocks
    /// along it: a window's border or a rule holds no text, and kept it would tie far-apart text
    /// into one rectangle the size of the window. A short dash or a letter's stroke is kept.
    fn drop_edges(&mut self, picture: &[u8]) {
        let (cols, rows) = (self.cols as usize, self.rows as usize);
        let mut upright = vec![false; self.changed.len()];
        let mut level = vec![false; self.changed.len()];
        for row in 0..self.rows {
            for col in 0..self.cols {
                let i = (row * self.cols + col) as usize;
                if self.changed[i] {
                    (upright[i], level[i]) = straight(self.width, self.height, picture, col * BLOCK, row * BLOCK);
                }
            }
        }
        let mut drop = vec![false; self.changed.len()];
        // Runs down each column of upright blocks, along each row of level ones.
        for col in 0..cols {
            mark_runs(&upright, (0..rows).map(|r| r * cols + col), &mut drop);
        }
        for row in 0..rows {
            mark_runs(&level, (0..cols).map(|c| row * cols + c), &mut drop);
        }
        for (c, d) in self.changed.iter_mut().zip(drop) {
            *c &= !d;
        }
    }

    /// The changed blocks in groups — blocks touching, corners included, or one block apart
    /// (padded, they would overlap) — each as the rectangle around it; rectangles that would
    /// overlap once padded are one. Lines of text far apart are read apart, and a small change is
    /// read as a small rectangle whatever else on its rows changed.
    fn groups(&self) -> Vec<Region> {
        let (cols, rows) = (self.cols as i64, self.rows as i64);
        let mut group = vec![usize::MAX; self.changed.len()];
        // (c0, r0, c1, r1) in blocks, end exclusive.
        let mut boxes: Vec<(i64, i64, i64, i64)> = Vec::new();
        for start in 0..self.changed.len() {
            if !self.changed[start] || group[start] != usize::MAX {
                continue;
            }
            let g = boxes.len();
            let (c, r) = (start as i64 % cols, start as i64 / cols);
            let mut b = (c, r, c + 1, r + 1);
            group[start] = g;
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                let (c, r) = (i as i64 % cols, i as i64 / cols);
                b = (b.0.min(c), b.1.min(r), b.2.max(c + 1), b.3.max(r + 1));
                for dr in -2..=2 {
                    for dc in -2..=2 {
                        let (nc, nr) = (c + dc, r + dr);
                        if nc < 0 || nr < 0 || nc >= cols || nr >= rows {
                            continue;
                        }
                        let j = (nr * cols + nc) as usize;
                        if self.changed[j] && group[j] == usize::MAX {
                            group[j] = g;
                            stack.push(j);
                        }
                    }
                }
            }
            boxes.push(b);
        }
        // Rectangles one block apart or closer would overlap padded: one rectangle.
        let near = |a: &(i64, i64, i64, i64), b: &(i64, i64, i64, i64)| {
            a.0 <= b.2 + 1 && b.0 <= a.2 + 1 && a.1 <= b.3 + 1 && b.1 <= a.3 + 1
        };
        let mut merged = true;
        while merged {
            merged = false;
            'outer: for i in 0..boxes.len() {
                for j in i + 1..boxes.len() {
                    if near(&boxes[i], &boxes[j]) {
                        let b = boxes.swap_remove(j);
                        let a = &mut boxes[i];
                        *a = (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3));
                        merged = true;
                        break 'outer;
                    }
                }
            }
        }
        // Top to bottom, then left to right: the order a screen is read in.
        boxes.sort_by_key(|b| (b.1, b.0));
        boxes
            .into_iter()
            .map(|(c0, r0, c1, r1)| {
                let (x0, y0) = (c0 as u32 * BLOCK, r0 as u32 * BLOCK);
                let (x1, y1) = ((c1 as u32 * BLOCK).min(self.width), (r1 as u32 * BLOCK).min(self.height));
                Region { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }
            })
            .collect()
    }
}

/// Marks in `drop` the blocks of each run of at least [`EDGE_RUN`] consecutive `set` blocks
/// along `line`.
fn mark_runs(set: &[bool], line: impl Iterator<Item = usize>, drop: &mut [bool]) {
    let mut run: Vec<usize> = Vec::new();
    for i in line.chain(std::iter::once(usize::MAX)) {
        if i != usize::MAX && set[i] {
            run.push(i);
            continue;
        }
        if run.len() >= EDGE_RUN {
            for &j in &run {
                drop[j] = true;
            }
        }
        run.clear();
    }
}

/// Whether the block at (`bx`, `by`) holds only an upright line (each row like its first) and
/// only a level one (each column like its first), up to the codec's noise (fewer than
/// [`BLOCK_PIXELS`] pixels off by more than [`PIXEL_DELTA`]).
fn straight(width: u32, height: u32, p: &[u8], bx: u32, by: u32) -> (bool, bool) {
    let (m, n) = (BLOCK.min(width - bx) as usize, BLOCK.min(height - by) as usize);
    let at = |x: usize, y: usize| p[(by as usize + y) * width as usize + bx as usize + x];
    let (mut off_rows, mut off_cols) = (0, 0);
    for y in 0..n {
        for x in 0..m {
            off_rows += u32::from(at(x, y).abs_diff(at(x, 0)) > PIXEL_DELTA);
            off_cols += u32::from(at(x, y).abs_diff(at(0, y)) > PIXEL_DELTA);
        }
    }
    (off_rows < BLOCK_PIXELS, off_cols < BLOCK_PIXELS)
}

fn block_changed(width: u32, a: &[u8], b: &[u8], bx: u32, by: u32, cols: u32, rows: u32) -> bool {
    let mut n = 0;
    for y in by..by + rows {
        let start = (y * width + bx) as usize;
        let (ra, rb) = (&a[start..start + cols as usize], &b[start..start + cols as usize]);
        for (pa, pb) in ra.iter().zip(rb) {
            if pa.abs_diff(*pb) > PIXEL_DELTA {
                n += 1;
                if n >= BLOCK_PIXELS {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether any block differs between two pictures (stops at the first that does).
fn differs(width: u32, height: u32, a: &[u8], b: &[u8]) -> bool {
    (0..height).step_by(BLOCK as usize).any(|by| {
        // Most of a screen is bytes for bytes the same (the codec copies unchanged parts): a
        // band of identical rows is passed with one comparison.
        let band = (by * width) as usize..((by + BLOCK).min(height) * width) as usize;
        a[band.clone()] != b[band]
            && (0..width)
                .step_by(BLOCK as usize)
                .any(|bx| block_changed(width, a, b, bx, by, BLOCK.min(width - bx), BLOCK.min(height - by)))
    })
}

/// The bounding box of the blocks that differ between two pictures (`None`: none do).
pub fn changed_blocks(width: u32, height: u32, a: &[u8], b: &[u8]) -> Option<Region> {
    Grid::changed(width, height, a, b).bbox()
}

/// The vertical shift `d` (rows) that best makes `after`'s rows in `area` those of `before` `d`
/// rows lower (`d > 0`: the content moved up, as a terminal scrolls), judged on each row's count
/// of dark pixels in each of [`STRIPS`] columns (the codec's noise rarely crosses mid-grey).
/// `None` when no shift fits better than none.
fn scroll(width: u32, height: u32, before: &[u8], after: &[u8], area: Region) -> Option<i64> {
    if area.height < MIN_OVERLAP * 2 || area.y + area.height > height || area.x + area.width > width {
        return None;
    }
    let strip = area.width.div_ceil(STRIPS as u32).max(1) as usize;
    let profile = |p: &[u8]| -> Vec<[i32; STRIPS]> {
        (area.y..area.y + area.height)
            .map(|y| {
                let start = (y * width + area.x) as usize;
                let mut counts = [0i32; STRIPS];
                for (i, &v) in p[start..start + area.width as usize].iter().enumerate() {
                    counts[i / strip] += i32::from(v < 128);
                }
                counts
            })
            .collect()
    };
    let (pb, pa) = (profile(before), profile(after));
    let h = i64::from(area.height);
    // Mean difference per row compared, for a shift: first on each row's total (cheap, for every
    // shift), then column by column for the few shifts that fit best.
    let cost = |d: i64, row: &dyn Fn(&[i32; STRIPS], &[i32; STRIPS]) -> i64| -> f64 {
        let (lo, hi) = ((-d).max(0), (h - d).min(h));
        let sum: i64 = (lo..hi).map(|y| row(&pa[y as usize], &pb[(y + d) as usize])).sum();
        sum as f64 / (hi - lo).max(1) as f64
    };
    let total = |a: &[i32; STRIPS], b: &[i32; STRIPS]| i64::from((a.iter().sum::<i32>() - b.iter().sum::<i32>()).abs());
    let by_strip =
        |a: &[i32; STRIPS], b: &[i32; STRIPS]| a.iter().zip(b).map(|(x, y)| i64::from((x - y).abs())).sum::<i64>();
    let reach = h - i64::from(MIN_OVERLAP);
    let mut coarse: Vec<(f64, i64)> = (-reach..=reach).filter(|&d| d != 0).map(|d| (cost(d, &total), d)).collect();
    coarse.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = (cost(0, &by_strip), 0);
    for &(_, d) in coarse.iter().take(CANDIDATES) {
        let c = cost(d, &by_strip);
        if c < best.0 {
            best = (c, d);
        }
    }
    (best.1 != 0).then_some(best.1)
}

/// `before` with the rows of `area` taken from `d` rows lower (rows the shift leaves without a
/// source keep their old pixels, so they show as changed).
fn shifted(width: u32, before: &[u8], area: Region, d: i64) -> Vec<u8> {
    let mut out = before.to_vec();
    let (top, bottom) = (i64::from(area.y), i64::from(area.y + area.height));
    for y in top..bottom {
        let from = y + d;
        if from < top || from >= bottom {
            continue;
        }
        let (dst, src) = ((y as u32 * width + area.x) as usize, (from as u32 * width + area.x) as usize);
        out[dst..dst + area.width as usize].copy_from_slice(&before[src..src + area.width as usize]);
    }
    out
}

/// `r` padded by [`PAD`] on the left and right (a word cut by a block's edge is read whole) and,
/// up and down, from the rows where pixels changed (against `base`) to the first row without
/// contrast within [`PAD`] of them: a line of text above or below that did not change is not read
/// again (a block's rows often hold the end of the line before), and a glyph cut by a block's edge
/// is read whole.
fn pad(r: Region, width: u32, height: u32, base: &[u8], image: &[u8]) -> Region {
    let (x, x1) = (r.x.saturating_sub(PAD), (r.x + r.width + PAD).min(width));
    let row = |y: u32| {
        let start = (y * width) as usize;
        (start + x as usize, start + x1 as usize)
    };
    let changed = |y: u32| {
        let (a, b) = row(y);
        base[a..b].iter().zip(&image[a..b]).any(|(p, q)| p.abs_diff(*q) > PIXEL_DELTA)
    };
    let flat = |y: u32| {
        let (a, b) = row(y);
        let (lo, hi) = image[a..b].iter().fold((u8::MAX, 0u8), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        hi.saturating_sub(lo) <= PIXEL_DELTA
    };
    let rows = r.y..r.y + r.height;
    let (Some(top), Some(bottom)) = (rows.clone().find(|&y| changed(y)), rows.rev().find(|&y| changed(y))) else {
        // Nothing over the threshold (cannot happen for a changed block): the blocks, padded.
        let (y, y1) = (r.y.saturating_sub(PAD), (r.y + r.height + PAD).min(height));
        return Region { x, y, width: x1 - x, height: y1 - y };
    };
    // Up to the first row without contrast above the change (it is kept: a margin), at most PAD.
    let mut y = top;
    while y > 0 && top - y < PAD && !flat(y) {
        y -= 1;
    }
    let mut y1 = bottom + 1;
    while y1 < height && y1 - bottom <= PAD && !flat(y1 - 1) {
        y1 += 1;
    }
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

    fn regions(reads: &[Read]) -> Vec<Region> {
        reads.iter().map(|r| r.region).collect()
    }

    #[test]
    fn a_picture_is_read_once_it_stayed_still_and_only_where_it_changed() {
        let mut s = Settler::new(W, H, SETTLE);
        let title = picture(&[(96, 40, 16, 8)]);
        // The first picture, held: read once, compared with black, only where it has contrast
        // (the white background holds no text).
        assert_eq!(s.frame(ms(0), &title), vec![]);
        assert_eq!(s.frame(ms(200), &title), vec![], "not settled yet");
        let first = s.frame(ms(600), &title);
        assert_eq!(first.len(), 1, "settled");
        assert_eq!((first[0].at, first[0].region), (ms(0), Region { x: 80, y: 32, width: 48, height: 17 }));
        assert_eq!(s.frame(ms(900), &title), vec![], "read once");
        assert_eq!(s.picture(), Some(&title[..]), "the picture read, for its thumbnail");
        // A word appears at (40, 20): read after it stayed, only around it, at when it appeared.
        let word = picture(&[(96, 40, 16, 8), (40, 20, 20, 8)]);
        assert_eq!(s.frame(ms(1000), &word), vec![]);
        let read = s.frame(ms(1600), &word);
        assert_eq!(read.len(), 1);
        let read = &read[0];
        assert_eq!(read.at, ms(1000));
        assert_eq!(read.region, Region { x: 16, y: 19, width: 64, height: 10 }, "the word's rows, not the title's");
        assert_eq!(read.crop.len(), (64 * 10) as usize);
        assert_eq!(read.crop[(64 + 24) as usize], 0, "the crop holds the word");
        // The word erased: the line went blank, nothing to read.
        assert_eq!(s.frame(ms(2000), &title), vec![]);
        assert_eq!(s.frame(ms(2600), &title), vec![]);
    }

    #[test]
    fn changes_that_never_settle_are_not_read_but_the_end_is() {
        let mut s = Settler::new(W, H, SETTLE);
        // A new picture every 100 ms (typing, scrolling): nothing is read meanwhile.
        for i in 0..20u32 {
            let p = picture(&[(i * 4, 0, 4, 16)]);
            assert_eq!(s.frame(ms(u64::from(i) * 100), &p), vec![], "frame {i}");
        }
        // A frame that changes after the last one stayed long enough: the last one is read.
        let settled = s.frame(ms(2500), &picture(&[(100, 40, 8, 8)]));
        assert_eq!(settled.len(), 1, "the picture of 1.9 s stayed 600 ms");
        assert_eq!(settled[0].at, ms(1900));
        // The video ends: its last picture is read too.
        let last = s.finish();
        assert_eq!(last.len(), 1, "the end");
        assert_eq!(last[0].at, ms(2500));
        assert_eq!(s.finish(), vec![]);
        // A frame of another size is ignored, not a panic.
        assert_eq!(s.frame(ms(3000), &[0u8; 7]), vec![]);
    }

    /// Reads `next` after `first` (both held still), returning what the second reading read.
    fn read_after(w: u32, h: u32, first: &[u8], next: &[u8]) -> Vec<Read> {
        let mut s = Settler::new(w, h, SETTLE);
        s.frame(ms(0), first);
        s.frame(ms(600), first);
        s.frame(ms(1000), next);
        let out = s.frame(ms(1600), next);
        assert!(s.finish().is_empty());
        out
    }

    #[test]
    fn changes_far_apart_are_read_apart_not_with_the_still_screen_between() {
        let (w, h) = (320, 240);
        let first = vec![255u8; (w * h) as usize];
        let mut next = first.clone();
        // A clock in the top right and a line typed near the bottom.
        for (x0, y0) in [(280, 4), (20, 200)] {
            for y in y0..y0 + 10 {
                for x in x0..x0 + 30 {
                    next[(y * w + x) as usize] = 0;
                }
            }
        }
        let read = read_after(w, h, &first, &next);
        assert_eq!(
            regions(&read),
            vec![Region { x: 256, y: 3, width: 64, height: 12 }, Region { x: 0, y: 199, width: 80, height: 12 }],
            "two small regions (the rows that changed and a blank row each side), not the 320x240 box \
             around both"
        );
    }

    #[test]
    fn a_small_change_beside_a_tall_edge_is_read_as_a_small_region() {
        let (w, h) = (320, 240);
        // A black desktop; a grey window from x = 200 to the right (its border has contrast in
        // every row, its inside is flat) and a word on the desktop at (20, 100). The first
        // picture is compared with black: the window and the word are new.
        let mut first = vec![0u8; (w * h) as usize];
        for y in 0..h {
            for x in 200..w {
                first[(y * w + x) as usize] = 200;
            }
        }
        for y in 100..110 {
            for x in (20..50).filter(|x| x % 4 != 0) {
                first[(y * w + x) as usize] = 255;
            }
        }
        let mut s = Settler::new(w, h, SETTLE);
        s.frame(ms(0), &first);
        let read = s.frame(ms(600), &first);
        let word = read.iter().find(|r| r.region.x <= 20 && r.region.y <= 100).expect("the word is read");
        assert!(
            word.region.width <= 80 && word.region.height <= 64,
            "the word alone, not the rows to the window's edge: {:?}",
            regions(&read)
        );
        let pixels: u32 = read.iter().map(|r| r.region.width * r.region.height).sum();
        assert!(pixels <= 80 * 64, "the border is no text: {:?}", regions(&read));
        // The same beside a dark line one pixel wide down the whole screen (a rule, a divider)
        // and a level one along the bottom: an L around the word is not one rectangle.
        let mut next = vec![255u8; (w * h) as usize];
        for y in 0..h {
            next[(y * w + 150) as usize] = 0;
        }
        for x in 0..w {
            next[((h - 8) * w + x) as usize] = 0;
        }
        for y in 60..70 {
            for x in (30..60).filter(|x| x % 3 != 0) {
                next[(y * w + x) as usize] = 0;
            }
        }
        let read = s.frame(ms(1000), &next);
        assert!(read.is_empty(), "the first picture was read already");
        let read = s.finish();
        let pixels: u32 = read.iter().map(|r| r.region.width * r.region.height).sum();
        assert!(read.iter().any(|r| r.region.x <= 30 && r.region.y <= 60), "{:?}", regions(&read));
        assert!(pixels <= 2 * 80 * 64, "{pixels} px read for a word: {:?}", regions(&read));
    }

    /// A terminal-like screen: `lines` lines of 16 rows from the top, numbered from `first_line`,
    /// each with dark "words" that depend on its number; `noise` moves every 3rd pixel by up to 20
    /// grey levels (the codec).
    fn terminal(w: u32, h: u32, first_line: u32, lines: u32, noise: u8) -> Vec<u8> {
        let mut p = vec![255u8; (w * h) as usize];
        for l in 0..lines {
            let n = first_line + l;
            let y0 = l * 16;
            let mut x = 4 + (n * 7) % 13;
            while x + 12 < w {
                let len = 4 + (n * 31 + x) % 40;
                for y in y0 + 3..y0 + 13 {
                    for xx in x..(x + len).min(w - 4) {
                        p[(y * w + xx) as usize] = 0;
                    }
                }
                x += len + 8 + (n * 13 + x) % 9;
            }
        }
        for (i, v) in p.iter_mut().enumerate() {
            if i % 3 == 0 {
                *v = if *v > 128 { v.saturating_sub(noise) } else { v.saturating_add(noise) };
            }
        }
        p
    }

    #[test]
    fn a_scrolled_terminal_is_read_only_for_the_lines_the_scroll_brought_in() {
        let (w, h) = (320, 240);
        // 14 lines, then the same terminal scrolled by 3 lines (48 rows): lines 3..17, the last
        // three new. The codec's noise differs between the two pictures.
        let first = terminal(w, h, 0, 14, 0);
        let next = terminal(w, h, 3, 14, 20);
        let read = read_after(w, h, &first, &next);
        let rows: u32 = read.iter().map(|r| r.region.height).sum();
        assert!(!read.is_empty());
        assert!(read.iter().all(|r| r.region.y >= 11 * 16 - PAD), "only the bottom lines: {:?}", regions(&read));
        assert!(rows <= 3 * 16 + 2 * PAD, "{rows} rows read for 3 new lines: {:?}", regions(&read));
        // The new lines are in what is read.
        let last = read.last().unwrap();
        let bottom = (13 * 16 + 8 - last.region.y) * last.region.width;
        assert!(last.crop[bottom as usize..(bottom + last.region.width) as usize].iter().any(|&p| p < 64));
        // Scrolled the other way (back up by 2 lines): only the two lines at the top.
        let up = terminal(w, h, 1, 14, 0);
        let read = read_after(w, h, &next, &up);
        assert!(
            read.iter().all(|r| r.region.y + r.region.height <= 2 * 16 + PAD),
            "only the top lines: {:?}",
            regions(&read)
        );
    }

    #[test]
    fn a_change_that_is_no_scroll_is_read_whole() {
        let (w, h) = (320, 240);
        // A different text everywhere (a new window): no shift explains it, all of it is read.
        let first = terminal(w, h, 0, 14, 0);
        let next = terminal(w, h, 100, 14, 0);
        let read = read_after(w, h, &first, &next);
        // Every line's text, from the first line's top (row 3) to the last one's bottom.
        let rows: u32 = read.iter().map(|r| r.region.height).sum();
        assert!(rows >= 13 * 16 + 10, "{:?}", regions(&read));
        assert!(read.iter().any(|r| r.region.y <= 3), "{:?}", regions(&read));
        assert!(read.iter().any(|r| r.region.y + r.region.height >= 13 * 16 + 13), "{:?}", regions(&read));
    }

    #[test]
    fn pixels_read_before_are_given_again_at_every_later_time() {
        let mut s = Settler::new(W, H, SETTLE);
        let (a, b) = (picture(&[(40, 20, 20, 8)]), picture(&[(40, 20, 6, 8), (50, 20, 10, 8)]));
        let mut t = 0;
        let mut read = |p: &[u8]| {
            s.frame(ms(t), p);
            let at = t;
            t += 600;
            let out = s.frame(ms(t), p);
            t += 100;
            (at, out)
        };
        let (_, first) = read(&a);
        assert_eq!(first.len(), 1, "a (against black)");
        let (_, second) = read(&b);
        assert_eq!(second.len(), 1, "b where it differs from a");
        // Back and forth (windows switched): the same pixels are given again, each time at the
        // time they were shown again, so a search finds every occurrence.
        let (at, back) = read(&a);
        assert_eq!(back.len(), 1, "a where it differs from b");
        assert_eq!(back[0].at, ms(at));
        for (p, before) in [(&b, &second[0]), (&a, &back[0]), (&b, &second[0])] {
            let (at, again) = read(p);
            assert_eq!(again.len(), 1, "shown again at {at} ms");
            assert_eq!(again[0].at, ms(at));
            assert_eq!((again[0].region, &again[0].crop), (before.region, &before.crop), "the same part");
        }
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
    fn arbitrary_pictures_give_regions_inside_the_picture_and_crops_of_their_size() {
        // A fixed-seed generator: noise, bars, lines and blank screens of awkward sizes.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (w, h) in [(1, 1), (15, 17), (33, 64), (200, 37), (64, 200)] {
            let mut s = Settler::new(w, h, SETTLE);
            let mut t = 0u64;
            for _ in 0..40 {
                let mut p = vec![(next() % 256) as u8; (w * h) as usize];
                match next() % 4 {
                    0 => p.iter_mut().for_each(|v| *v = next() as u8),
                    1 => {
                        let x = (next() % u64::from(w)) as u32;
                        (0..h).for_each(|y| p[(y * w + x) as usize] = !p[(y * w + x) as usize]);
                    }
                    2 => {
                        let y = (next() % u64::from(h)) as u32;
                        (0..w).for_each(|x| p[(y * w + x) as usize] = next() as u8);
                    }
                    _ => {}
                }
                t += next() % 900;
                let mut reads = s.frame(ms(t), &p);
                if next() % 8 == 0 {
                    reads.extend(s.finish());
                }
                for r in reads {
                    let g = r.region;
                    assert!(
                        g.width > 0 && g.height > 0 && g.x + g.width <= w && g.y + g.height <= h,
                        "{g:?} in {w}x{h}"
                    );
                    assert_eq!(r.crop.len(), (g.width * g.height) as usize);
                    assert!(r.at <= ms(t));
                }
                if let Some(p) = s.picture() {
                    assert_eq!(p.len(), (w * h) as usize);
                    let png = crate::thumb::png(w, h, p).expect("a thumbnail of every picture read");
                    assert!(png.starts_with(b"\x89PNG"));
                }
            }
        }
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
        // Scroll detection on an odd size does not panic.
        let mut s = Settler::new(w, h, SETTLE);
        s.frame(ms(0), &a);
        s.frame(ms(600), &a);
        s.frame(ms(700), &b);
        assert!(!s.finish().is_empty());
    }
}
