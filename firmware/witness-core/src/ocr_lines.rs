//! Lines of text in a changed region of the screen, found cheaply (a row projection: the runs of
//! rows that hold ink), and a cache of the lines already read: a line whose pixels (its grey
//! pixels cropped to its ink, compared with the lines of its size read before: the codec's noise
//! on the same text does not make it new, another glyph does) were read before takes the text read then, at its
//! new time and place, instead of another Tesseract run. Pure: tested without Tesseract.

use crate::ocr::Region;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// A pixel is ink when its grey level is this far from the region's background (its most
/// common level); the codec's noise stays below.
const INK: u8 = 40;
/// Two lines of one size are the same when, in every cell of [`CELL`] columns, at most
/// [`CELL_FLIPS`] pixels differ by more than [`FLIP`] and the pixels differ by at most [`CELL_MEAN`]
/// on average: the codec moves a glyph's anti-aliased edge from one picture to the next (hashed
/// exactly, 1 line of 323 of the bench's typing was found again; see README), another glyph
/// moves whole strokes.
const CELL: usize = 4;
const FLIP: u8 = 120;
const CELL_FLIPS: usize = 0;
const CELL_MEAN: u32 = 8;
/// A run of ink rows lower than this (an i's dot, an underline) belongs to the run next to it
/// when at most [`JOIN_GAP`] blank rows apart.
const MIN_LINE: u32 = 6;
const JOIN_GAP: u32 = 3;
/// Pixels of the region kept around a line's ink for Tesseract (not hashed).
const MARGIN: u32 = 6;
/// Lines remembered at most (then forgotten all at once: reading again is only slower).
pub const CACHE_MAX: usize = 65_536;

/// A line found in a region: where its ink is on the screen, the hash of its ink's pixels, and
/// the part of the region to read (its ink and a margin).
#[derive(Debug, Clone, PartialEq)]
pub struct LinePart {
    /// The ink's rectangle on the screen: x, y, width, height.
    pub ink: [u32; 4],
    /// Hash of the ink's size: lines of one size are compared pixel by pixel.
    pub key: u64,
    /// The ink's pixels as their distance from the background (light on dark or dark on light
    /// alike), `ink[2]` a row.
    pub ink_px: Vec<u8>,
    /// What Tesseract reads for it.
    pub sheet: Region,
}

/// The lines of `r`, top to bottom: runs of rows holding ink (a short run joined to the run
/// beside it), each cropped to the columns holding ink. A region without ink has none.
pub fn split(r: &Region) -> Vec<LinePart> {
    let (w, h) = (r.width as usize, r.height as usize);
    if w == 0 || h == 0 || r.gray.len() < w * h {
        return Vec::new();
    }
    let px = &r.gray[..w * h];
    let mut hist = [0u32; 256];
    for &p in px {
        hist[p as usize] += 1;
    }
    let bg = (0..256).max_by_key(|&v| hist[v]).unwrap_or(0) as u8;
    let ink = |p: u8| p.abs_diff(bg) > INK;
    let inked: Vec<bool> = px.chunks(w).map(|row| row.iter().any(|&p| ink(p))).collect();
    // Runs of ink rows: [start, end).
    let mut runs: Vec<(u32, u32)> = Vec::new();
    let mut y = 0;
    while y < h {
        if !inked[y] {
            y += 1;
            continue;
        }
        let start = y;
        while y < h && inked[y] {
            y += 1;
        }
        runs.push((start as u32, y as u32));
    }
    // A short run joins the nearer of its neighbours within JOIN_GAP.
    let mut i = 0;
    while i < runs.len() {
        let (s, e) = runs[i];
        if e - s >= MIN_LINE || runs.len() == 1 {
            i += 1;
            continue;
        }
        let below = runs.get(i + 1).map(|n| n.0 - e).filter(|&g| g <= JOIN_GAP);
        let above = i.checked_sub(1).map(|j| s - runs[j].1).filter(|&g| g <= JOIN_GAP);
        match (above, below) {
            (Some(a), Some(b)) if a < b => {
                runs[i - 1].1 = e;
                runs.remove(i);
            }
            (_, Some(_)) => {
                runs[i + 1].0 = s;
                runs.remove(i);
            }
            (Some(_), None) => {
                runs[i - 1].1 = e;
                runs.remove(i);
            }
            (None, None) => i += 1,
        }
    }
    let mut out = Vec::with_capacity(runs.len());
    for (y0, y1) in runs {
        let rows = &px[y0 as usize * w..y1 as usize * w];
        let mut x0 = w;
        let mut x1 = 0;
        for row in rows.chunks(w) {
            if let Some(a) = row.iter().position(|&p| ink(p)) {
                x0 = x0.min(a);
                x1 = x1.max(row.iter().rposition(|&p| ink(p)).map_or(0, |b| b + 1));
            }
        }
        if x0 >= x1 {
            continue;
        }
        let (x0, x1) = (x0 as u32, x1 as u32);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (x1 - x0, y1 - y0).hash(&mut hasher);
        let mut ink_px = Vec::with_capacity(((x1 - x0) * (y1 - y0)) as usize);
        for row in rows.chunks(w) {
            ink_px.extend(row[x0 as usize..x1 as usize].iter().map(|p| p.abs_diff(bg)));
        }
        let (mx0, my0) = (x0.saturating_sub(MARGIN), y0.saturating_sub(MARGIN));
        let (mx1, my1) = ((x1 + MARGIN).min(r.width), (y1 + MARGIN).min(r.height));
        let mut gray = Vec::with_capacity(((mx1 - mx0) * (my1 - my0)) as usize);
        for yy in my0..my1 {
            let start = (yy * r.width) as usize;
            gray.extend_from_slice(&px[start + mx0 as usize..start + mx1 as usize]);
        }
        out.push(LinePart {
            ink: [r.x + x0, r.y + y0, x1 - x0, y1 - y0],
            key: hasher.finish(),
            ink_px,
            sheet: Region { x: r.x + mx0, y: r.y + my0, width: mx1 - mx0, height: my1 - my0, gray },
        });
    }
    out
}

/// A line's text as read once, its rectangle relative to its ink's top left corner.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub text: String,
    pub offset: [i64; 2],
    pub size: [u32; 2],
}

/// Whether two lines' pixels (distance from their background, `width` a row, same size) are
/// the same text.
fn same(a: &[u8], b: &[u8], width: usize) -> bool {
    if a.len() != b.len() || width == 0 {
        return false;
    }
    let height = a.len() / width;
    for c0 in (0..width).step_by(CELL) {
        let c1 = (c0 + CELL).min(width);
        let (mut flips, mut sum) = (0usize, 0u32);
        for y in 0..height {
            for x in c0..c1 {
                let d = a[y * width + x].abs_diff(b[y * width + x]);
                flips += usize::from(d > FLIP);
                sum += u32::from(d);
            }
        }
        if flips > CELL_FLIPS || sum > CELL_MEAN * ((c1 - c0) * height) as u32 {
            return false;
        }
    }
    true
}

/// A line read: its pixels (as in [`LinePart::ink_px`]) and what Tesseract read.
type Seen = (Vec<u8>, Vec<Read>);

/// What the lines already read said: by the ink's size, each line's pixels and its text.
#[derive(Debug, Default)]
pub struct LineCache {
    lines: HashMap<u64, Vec<Seen>>,
    count: usize,
    /// Lines read by Tesseract and stored so far.
    pub misses: u64,
}

impl LineCache {
    fn find(&self, part: &LinePart) -> Option<&Vec<Read>> {
        let width = part.ink[2] as usize;
        self.lines.get(&part.key)?.iter().find(|(px, _)| same(px, &part.ink_px, width)).map(|(_, r)| r)
    }

    /// Whether a line with the pixels of `part` was read.
    pub fn has(&self, part: &LinePart) -> bool {
        self.find(part).is_some()
    }

    /// Forgets everything when full; call between batches, never between storing a batch's lines
    /// and taking them.
    pub fn trim(&mut self) {
        if self.count >= CACHE_MAX {
            self.lines.clear();
            self.count = 0;
        }
    }

    /// Stores what Tesseract read for `part`: lines `(text, rect on the screen)`, maybe none.
    pub fn store(&mut self, part: &LinePart, read: impl IntoIterator<Item = (String, [u32; 4])>) {
        let [x, y, _, _] = part.ink;
        let reads = read
            .into_iter()
            .map(|(text, r)| Read {
                text,
                offset: [i64::from(r[0]) - i64::from(x), i64::from(r[1]) - i64::from(y)],
                size: [r[2], r[3]],
            })
            .collect();
        self.misses += 1;
        self.count += 1;
        self.lines.entry(part.key).or_default().push((part.ink_px.clone(), reads));
    }

    /// The text of `part` if a line of its pixels was read, each line with its rectangle where
    /// `part` is now.
    pub fn lines(&self, part: &LinePart) -> Option<Vec<(String, [u32; 4])>> {
        let reads = self.find(part)?;
        let [x, y, _, _] = part.ink;
        let at = |base: u32, off: i64| (i64::from(base) + off).clamp(0, i64::from(u32::MAX)) as u32;
        Some(
            reads
                .iter()
                .map(|r| (r.text.clone(), [at(x, r.offset[0]), at(y, r.offset[1]), r.size[0], r.size[1]]))
                .collect(),
        )
    }
}

/// Whether `a` and `b` are lines of the same pixels (as [`LineCache`] compares them).
pub fn same_line(a: &LinePart, b: &LinePart) -> bool {
    a.key == b.key && a.ink[2..] == b.ink[2..] && same(&a.ink_px, &b.ink_px, a.ink[2] as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A white region `w`×`h` at (100, 200) with dark bars (x, y, w, h) inside.
    fn region(w: u32, h: u32, bars: &[(u32, u32, u32, u32)]) -> Region {
        let mut gray = vec![250u8; (w * h) as usize];
        for &(x, y, bw, bh) in bars {
            for yy in y..y + bh {
                for xx in x..x + bw {
                    gray[(yy * w + xx) as usize] = 10;
                }
            }
        }
        Region { x: 100, y: 200, width: w, height: h, gray }
    }

    #[test]
    fn lines_are_runs_of_ink_rows_cropped_to_their_ink() {
        // Two lines (rows 3..13 and 20..30), an i's dot two rows above the second.
        let r = region(80, 40, &[(10, 3, 30, 10), (5, 20, 50, 10), (7, 16, 2, 2)]);
        let parts = split(&r);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0].ink, [110, 203, 30, 10]);
        assert_eq!(parts[1].ink, [105, 216, 50, 14], "the dot is part of its line");
        // A margin around the ink, inside the region.
        assert_eq!(
            (parts[0].sheet.x, parts[0].sheet.y, parts[0].sheet.width, parts[0].sheet.height),
            (104, 200, 42, 19)
        );
        assert_eq!(parts[0].sheet.gray.len(), 42 * 19);
        assert_eq!(parts[0].sheet.gray[3 * 42 + 6], 10, "the ink is in the crop");
        // Light on dark: the background is the most common level whatever it is.
        let mut dark = r.clone();
        dark.gray.iter_mut().for_each(|p| *p = 255 - *p);
        assert_eq!(
            split(&dark).iter().map(|p| p.ink).collect::<Vec<_>>(),
            parts.iter().map(|p| p.ink).collect::<Vec<_>>()
        );
        // No ink, no lines; a bad size, none either.
        assert_eq!(split(&region(20, 20, &[])), vec![]);
        assert_eq!(split(&Region { x: 0, y: 0, width: 5, height: 5, gray: vec![0; 3] }), vec![]);
    }

    #[test]
    fn the_same_pixels_elsewhere_are_the_same_line_and_other_pixels_are_not() {
        let a = split(&region(80, 20, &[(10, 5, 30, 10)]));
        let mut moved = region(120, 30, &[(50, 12, 30, 10)]);
        moved.x = 0;
        let b = split(&moved);
        assert!(same_line(&a[0], &b[0]), "same ink, other place and margins");
        let c = split(&region(80, 20, &[(10, 5, 31, 10)]));
        assert!(!same_line(&a[0], &c[0]));
        let mut d = region(80, 20, &[(10, 5, 30, 10)]);
        d.gray[7 * 80 + 20] = 60;
        d.gray[8 * 80 + 33] = 70;
        assert!(same_line(&a[0], &split(&d)[0]), "the codec's noise on the same glyphs");
        for i in 0..4 {
            d.gray[(6 + i) * 80 + 20] = 250;
        }
        assert!(!same_line(&a[0], &split(&d)[0]), "a stroke less: another glyph");
    }

    #[test]
    fn a_cached_line_is_given_at_its_new_place() {
        let mut cache = LineCache::default();
        let a = split(&region(80, 20, &[(10, 5, 30, 10)])).remove(0);
        assert!(!cache.has(&a));
        assert_eq!(cache.lines(&a), None);
        cache.store(&a, [("uptime".to_string(), [108, 204, 34, 12])]);
        assert_eq!(cache.lines(&a), Some(vec![("uptime".to_string(), [108, 204, 34, 12])]));
        let mut moved = region(120, 30, &[(50, 12, 30, 10)]);
        (moved.x, moved.y) = (0, 500);
        let b = split(&moved).remove(0);
        assert_eq!(cache.lines(&b), Some(vec![("uptime".to_string(), [48, 511, 34, 12])]));
        // A line read as nothing is remembered as nothing.
        let c = split(&region(80, 20, &[(10, 5, 3, 10)])).remove(0);
        cache.store(&c, []);
        assert_eq!(cache.lines(&c), Some(vec![]));
        assert_eq!(cache.misses, 2);
    }

    #[test]
    fn arbitrary_regions_give_lines_inside_them() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (w, h) in [(1, 1), (3, 40), (40, 3), (64, 64), (200, 17)] {
            for _ in 0..30 {
                let gray: Vec<u8> = (0..w * h).map(|_| if next() % 5 == 0 { next() as u8 } else { 200 }).collect();
                let r = Region { x: 7, y: 9, width: w, height: h, gray };
                for p in split(&r) {
                    let [x, y, pw, ph] = p.ink;
                    assert!(pw > 0 && ph > 0 && x >= 7 && y >= 9 && x + pw <= 7 + w && y + ph <= 9 + h, "{p:?}");
                    let s = &p.sheet;
                    assert!(s.x <= x && s.y <= y && s.x + s.width >= x + pw && s.y + s.height >= y + ph);
                    assert!(s.x + s.width <= 7 + w && s.y + s.height <= 9 + h);
                    assert_eq!(s.gray.len(), (s.width * s.height) as usize);
                }
            }
        }
    }
}
