//! Lines of text in a changed region of the screen, found cheaply (a row projection: the runs of
//! rows that hold ink), and a cache of the lines already read: a line whose pixels (its grey
//! pixels cropped to its ink, compared with the lines of its size read before: the codec's noise
//! on the same text does not make it new, another glyph does) were read before takes the text read then, at its
//! new time and place, instead of another Tesseract run (a line Tesseract was unsure of can be
//! read again at its next occurrences, the surest reading kept: [`LineCache::reads_max`], off
//! by default, it did not pay). Each line goes to Tesseract alone on a background of its own
//! (its neighbours' ascenders and descenders left out) with a margin. Pure: tested without
//! Tesseract.

use crate::ocr::{Region, Sheet};
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
/// Pixels of background around a line's ink for Tesseract (not hashed): the line's own
/// background, not the region's pixels, so a neighbouring line's ascenders and descenders are
/// not read with it.
pub const MARGIN: u32 = 8;
/// A line read with every word at least this sure (0–100, Tesseract's confidence) is taken from
/// the cache at its later occurrences; a line read less surely is read again, up to
/// [`READS_MAX`] times.
pub const SURE: f64 = 90.0;
/// Times a line is read at most, however unsure: then its surest reading is taken. One: reading
/// an unsure line again did not pay (the bench's typing, 305 s: 790 of 1 073 words read exactly
/// reading each line once, 789 reading an unsure one twice, 794 three times, for a fifth more
/// Tesseract CPU; the codec's noise does not change what Tesseract reads). Kept to be tried
/// (`ocr_probe`'s `READS_MAX`).
pub const READS_MAX: u32 = 1;
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
    split_with(r, MARGIN)
}

/// [`split`] with `margin` pixels of background around each line's ink on its sheet.
pub fn split_with(r: &Region, margin: u32) -> Vec<LinePart> {
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
        // The ink's rows on the line's background, `margin` around (less left and above where
        // the screen ends).
        let (sx, sy) = (r.x.saturating_add(x0), r.y.saturating_add(y0));
        let (left, top) = (margin.min(sx), margin.min(sy));
        let (iw, ih) = ((x1 - x0) as usize, (y1 - y0) as usize);
        let cw = iw + (left + margin) as usize;
        let ch = ih + (top + margin) as usize;
        let mut gray = vec![bg; cw * ch];
        for (i, row) in rows.chunks(w).enumerate() {
            let at = (top as usize + i) * cw + left as usize;
            gray[at..at + iw].copy_from_slice(&row[x0 as usize..x1 as usize]);
        }
        out.push(LinePart {
            ink: [sx, sy, x1 - x0, y1 - y0],
            key: hasher.finish(),
            ink_px,
            sheet: Region { x: sx - left, y: sy - top, width: cw as u32, height: ch as u32, gray },
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

/// A line read: its pixels (as in [`LinePart::ink_px`]), its surest reading, how sure Tesseract
/// was of it (its least sure word) and how many times it was read.
#[derive(Debug)]
struct Seen {
    px: Vec<u8>,
    reads: Vec<Read>,
    confidence: f64,
    times: u32,
}

/// What the lines already read said: by the ink's size, each line's pixels and its text.
#[derive(Debug)]
pub struct LineCache {
    lines: HashMap<u64, Vec<Seen>>,
    count: usize,
    /// Lines read by Tesseract and stored so far.
    pub misses: u64,
    /// A reading this sure is taken again ([`SURE`]); a less sure one is read again, up to
    /// `reads_max` times ([`READS_MAX`]: by default it is not).
    pub sure: f64,
    pub reads_max: u32,
}

impl Default for LineCache {
    fn default() -> Self {
        Self { lines: HashMap::new(), count: 0, misses: 0, sure: SURE, reads_max: READS_MAX }
    }
}

impl LineCache {
    fn find(&self, part: &LinePart) -> Option<&Seen> {
        let width = part.ink[2] as usize;
        self.lines.get(&part.key)?.iter().find(|s| same(&s.px, &part.ink_px, width))
    }

    /// Whether a line with the pixels of `part` was read and its reading is taken again: read
    /// surely, or read [`LineCache::reads_max`] times.
    pub fn has(&self, part: &LinePart) -> bool {
        self.find(part).is_some_and(|s| s.confidence >= self.sure || s.times >= self.reads_max)
    }

    /// Forgets everything when full; call between batches, never between storing a batch's lines
    /// and taking them.
    pub fn trim(&mut self) {
        if self.count >= CACHE_MAX {
            self.lines.clear();
            self.count = 0;
        }
    }

    /// Stores what Tesseract read for `part`: lines `(text, rect on the screen)`, maybe none,
    /// and how sure it was (its least sure word, 0–100). A line read before keeps the surer
    /// reading.
    pub fn store(&mut self, part: &LinePart, read: impl IntoIterator<Item = (String, [u32; 4])>, confidence: f64) {
        let [x, y, _, _] = part.ink;
        let reads: Vec<Read> = read
            .into_iter()
            .map(|(text, r)| Read {
                text,
                offset: [i64::from(r[0]) - i64::from(x), i64::from(r[1]) - i64::from(y)],
                size: [r[2], r[3]],
            })
            .collect();
        self.misses += 1;
        let width = part.ink[2] as usize;
        let seen = self.lines.entry(part.key).or_default();
        if let Some(s) = seen.iter_mut().find(|s| same(&s.px, &part.ink_px, width)) {
            s.times = s.times.saturating_add(1);
            if confidence > s.confidence {
                (s.reads, s.confidence) = (reads, confidence);
            }
            return;
        }
        self.count += 1;
        seen.push(Seen { px: part.ink_px.clone(), reads, confidence, times: 1 });
    }

    /// The text of `part` if a line of its pixels was read (its surest reading), each line with
    /// its rectangle where `part` is now.
    pub fn lines(&self, part: &LinePart) -> Option<Vec<(String, [u32; 4])>> {
        let reads = &self.find(part)?.reads;
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

/// Lines of text `(text, rect on the screen)`.
pub type Lines = Vec<(String, [u32; 4])>;

/// What reading a batch of lines did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    /// Lines given to Tesseract (each line new in the batch once), taken from the cache, sheets.
    pub read: u64,
    pub cached: u64,
    pub sheets: u64,
}

/// Reads the lines of a batch of regions (`parts`: each region's lines): a line the cache takes
/// again ([`LineCache::has`]) gets its text from it; the others are laid on sheets enlarged
/// `scale` times, each once per batch, and read by `run` (a sheet to Tesseract's TSV answer),
/// then stored in the cache. Each region's lines, at the line's place: a line read in this
/// batch gets what was read now, even when the cache keeps a surer reading of another time.
pub fn read<E>(
    cache: &mut LineCache,
    parts: &[Vec<LinePart>],
    scale: u32,
    counts: &mut Counts,
    mut run: impl FnMut(&Sheet) -> Result<String, E>,
) -> Result<Vec<Lines>, E> {
    cache.trim();
    // Each line: the cache's reading (None) or the index of the new line read for it.
    let mut todo: Vec<&LinePart> = Vec::new();
    let mut source: Vec<Vec<Option<usize>>> = Vec::with_capacity(parts.len());
    for lines in parts {
        let mut mine = Vec::with_capacity(lines.len());
        for part in lines {
            if cache.has(part) {
                counts.cached += 1;
                mine.push(None);
            } else if let Some(i) = todo.iter().position(|t| same_line(t, part)) {
                counts.cached += 1;
                mine.push(Some(i));
            } else {
                todo.push(part);
                mine.push(Some(todo.len() - 1));
            }
        }
        source.push(mine);
    }
    // What was read now, relative to each new line's ink.
    let mut fresh: Vec<Vec<Read>> = Vec::with_capacity(todo.len());
    let mut rest = &todo[..];
    while !rest.is_empty() {
        let mut sheet = Sheet::new(scale);
        let n = sheet.fill(rest.iter().map(|p| p.sheet.clone()));
        let (done, later) = rest.split_at(n);
        rest = later;
        let tsv = run(&sheet)?;
        counts.sheets += 1;
        counts.read += n as u64;
        let (lines, sure) = (sheet.lines(&tsv), sheet.confidence(&tsv));
        for (i, part) in done.iter().enumerate() {
            let got: Lines = lines.iter().filter(|l| l.region == i).map(|l| (l.text.clone(), l.rect)).collect();
            let [x, y, _, _] = part.ink;
            fresh.push(
                got.iter()
                    .map(|(text, r)| Read {
                        text: text.clone(),
                        offset: [i64::from(r[0]) - i64::from(x), i64::from(r[1]) - i64::from(y)],
                        size: [r[2], r[3]],
                    })
                    .collect(),
            );
            cache.store(part, got, sure.get(i).copied().unwrap_or(0.0));
        }
    }
    let at = |base: u32, off: i64| (i64::from(base) + off).clamp(0, i64::from(u32::MAX)) as u32;
    Ok(parts
        .iter()
        .zip(&source)
        .map(|(lines, mine)| {
            lines
                .iter()
                .zip(mine)
                .flat_map(|(part, from)| match from {
                    Some(i) => {
                        let [x, y, _, _] = part.ink;
                        fresh[*i]
                            .iter()
                            .map(|r| (r.text.clone(), [at(x, r.offset[0]), at(y, r.offset[1]), r.size[0], r.size[1]]))
                            .collect()
                    }
                    None => cache.lines(part).unwrap_or_default(),
                })
                .collect()
        })
        .collect())
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
        // A margin of background around the ink, past the region's edge if need be.
        let m = MARGIN;
        let s0 = &parts[0].sheet;
        assert_eq!((s0.x, s0.y, s0.width, s0.height), (110 - m, 203 - m, 30 + 2 * m, 10 + 2 * m));
        assert_eq!(s0.gray.len(), (s0.width * s0.height) as usize);
        assert_eq!(s0.gray[(m * s0.width + m) as usize], 10, "the ink is in the crop");
        assert_eq!(s0.gray.iter().filter(|&&p| p == 10).count(), 300, "the ink and nothing else");
        // The second line's crop reaches up to the first line's rows: only its own ink is there.
        let s1 = &parts[1].sheet;
        assert!(s1.y < 213, "the margin reaches the first line's rows");
        assert_eq!(s1.gray.iter().filter(|&&p| p == 10).count(), 50 * 10 + 2 * 2);
        // Where the screen ends, less margin.
        let mut corner = region(20, 20, &[(2, 1, 10, 10)]);
        (corner.x, corner.y) = (0, 0);
        let c = &split(&corner)[0].sheet;
        assert_eq!((c.x, c.y, c.width, c.height), (0, 0, 2 + 10 + m, 1 + 10 + m));
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
        cache.store(&a, [("uptime".to_string(), [108, 204, 34, 12])], 95.0);
        assert_eq!(cache.lines(&a), Some(vec![("uptime".to_string(), [108, 204, 34, 12])]));
        let mut moved = region(120, 30, &[(50, 12, 30, 10)]);
        (moved.x, moved.y) = (0, 500);
        let b = split(&moved).remove(0);
        assert_eq!(cache.lines(&b), Some(vec![("uptime".to_string(), [48, 511, 34, 12])]));
        // A line read as nothing is remembered as nothing.
        let c = split(&region(80, 20, &[(10, 5, 3, 10)])).remove(0);
        cache.store(&c, [], 100.0);
        assert_eq!(cache.lines(&c), Some(vec![]));
        // By default a line is read once, however unsure.
        let d = split(&region(80, 20, &[(10, 5, 9, 10)])).remove(0);
        cache.store(&d, [("l".to_string(), [110, 205, 9, 10])], 5.0);
        assert!(cache.has(&d));
        assert_eq!(cache.misses, 3);
    }

    #[test]
    fn an_unsure_reading_is_read_again_and_the_surest_kept() {
        let mut cache = LineCache { reads_max: 3, ..Default::default() };
        let a = split(&region(80, 20, &[(10, 5, 30, 10)])).remove(0);
        let read = |t: &str| vec![(t.to_string(), [110, 205, 30, 10])];
        cache.store(&a, read("uptlme"), 60.0);
        assert!(!cache.has(&a), "read unsurely: read again");
        assert_eq!(cache.lines(&a).unwrap()[0].0, "uptlme");
        cache.store(&a, read("uptime"), 80.0);
        assert_eq!(cache.lines(&a).unwrap()[0].0, "uptime", "the surer reading");
        cache.store(&a, read("uptirne"), 70.0);
        assert_eq!(cache.lines(&a).unwrap()[0].0, "uptime", "a less sure one does not replace it");
        assert!(cache.has(&a), "read three times: taken as it is");
        // A sure reading is taken at once.
        let b = split(&region(80, 20, &[(10, 5, 20, 10)])).remove(0);
        cache.store(&b, read("df"), SURE);
        assert!(cache.has(&b));
        assert_eq!(cache.misses, 4);
    }

    /// Tesseract's TSV for a sheet: `words` (text, confidence) on the sheet's rows `top..top+h`.
    fn tsv(words: &[(&str, f64, u32, u32)]) -> String {
        let mut out = String::from(
            "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n",
        );
        for (i, (text, conf, top, h)) in words.iter().enumerate() {
            out += &format!("5\t1\t1\t1\t{}\t1\t4\t{top}\t20\t{h}\t{conf}\t{text}\n", i + 1);
        }
        out
    }

    #[test]
    fn a_batch_reads_each_new_line_once_and_unsure_lines_again_later() {
        let mut cache = LineCache { reads_max: 3, ..Default::default() };
        // Two regions with the same line (other places), and a second line in the first.
        let r1 = region(80, 40, &[(10, 5, 30, 10), (10, 25, 40, 10)]);
        let mut r2 = region(80, 20, &[(10, 5, 30, 10)]);
        r2.x = 300;
        let parts = vec![split(&r1), split(&r2)];
        assert_eq!(parts[0].len(), 2);
        let mut counts = Counts::default();
        let mut sheets = Vec::new();
        let out = read(&mut cache, &parts, 2, &mut counts, |sheet: &Sheet| {
            sheets.push(sheet.len());
            // Sheet rows: line 1 at 0..52 (26 high, twice), then a gap of 24, line 2 at 76..128.
            Ok::<_, ()>(tsv(&[("uptime", 95.0, 10, 30), ("xxxx", 50.0, 86, 30)]))
        })
        .unwrap();
        assert_eq!(sheets, vec![2], "one sheet, the repeated line once");
        assert_eq!(counts, Counts { read: 2, cached: 1, sheets: 1 });
        assert_eq!(out[0].iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), ["uptime", "xxxx"]);
        assert_eq!(out[1].iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), ["uptime"]);
        // Its own place in each region (the word 4 px right of the sheet's left edge and 10 px
        // below its top, enlarged twice).
        assert_eq!(out[0][0].1, [110 - MARGIN + 2, 205 - MARGIN + 5, 10, 15]);
        assert_eq!(out[1][0].1, [310 - MARGIN + 2, 205 - MARGIN + 5, 10, 15]);
        // Next batch: the sure line from the cache, the unsure one read again (now surer).
        let again = vec![split(&r1)];
        let out = read(&mut cache, &again, 2, &mut counts, |sheet: &Sheet| {
            assert_eq!(sheet.len(), 1);
            Ok::<_, ()>(tsv(&[("xxxxx", 70.0, 10, 30)]))
        })
        .unwrap();
        assert_eq!(out[0].iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), ["uptime", "xxxxx"]);
        assert_eq!(counts, Counts { read: 3, cached: 2, sheets: 2 });
        // A failed run fails the batch.
        let parts = vec![split(&region(80, 20, &[(10, 5, 7, 10)]))];
        assert_eq!(read(&mut cache, &parts, 2, &mut counts, |_: &Sheet| Err("no tesseract")), Err("no tesseract"));
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
                    assert!(s.x + MARGIN >= x && s.y + MARGIN >= y, "{p:?}");
                    assert!(s.x + s.width <= x + pw + MARGIN && s.y + s.height <= y + ph + MARGIN);
                    assert_eq!(s.gray.len(), (s.width * s.height) as usize);
                }
            }
        }
    }
}
