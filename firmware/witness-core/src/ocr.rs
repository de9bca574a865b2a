//! Reading text off the screen, the part without I/O: the regions of a session video worth reading
//! are laid out on one sheet (each enlarged, dark text on light, a gap between them), so one
//! Tesseract run reads a batch of them through stdin; Tesseract's TSV answer is turned back into
//! lines of text, each with the region it came from and its rectangle on the screen.

/// Grey levels (0–255) between two regions on a sheet.
const GAP: u32 = 24;
/// Words Tesseract is less sure of than this (0–100) are left out: they are mostly noise.
pub const MIN_CONFIDENCE: f64 = 30.0;
/// A sheet's largest side: Tesseract (Leptonica) refuses larger pictures.
pub const MAX_SIDE: u32 = 30_000;
/// A run of one glyph ([`Sheet::run_of_one_glyph`]): at least this many glyphs, each differing
/// from the first by less than this share of their ink (the bench's `xxxx…` runs: at most 21 %,
/// through H.264; the pieces of a run Tesseract reads again as another line, whose boxes take in
/// the gap and the next line's pixels: 26 % and more; words of different letters: 40 % and
/// more), the reading at least this share one letter, and ink darker than white by this much.
const RUN_MIN: usize = 4;
const RUN_SAME: u64 = 24;
const RUN_SHARE: usize = 60;
const RUN_INK: u8 = 100;

/// A region to read: its place on the screen and its grey pixels (`width` a row).
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub gray: Vec<u8>,
}

/// Regions laid out top to bottom on one grey picture.
#[derive(Debug, Default)]
pub struct Sheet {
    scale: u32,
    width: u32,
    height: u32,
    /// Each region: its place on the screen (x, y) and its top on the sheet and height there.
    places: Vec<(u32, u32, u32, u32)>,
    rows: Vec<Vec<u8>>,
}

/// The words of the line being gathered, by Tesseract's (block, paragraph, line).
type PendingLine = ((u32, u32, u32), Vec<(String, [u32; 4])>);

/// A line Tesseract read: which region of the sheet, its text, its rectangle on the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub region: usize,
    pub text: String,
    pub rect: [u32; 4],
}

impl Sheet {
    /// An empty sheet; regions are enlarged `scale` times (small terminal fonts read better).
    pub fn new(scale: u32) -> Self {
        Self { scale: scale.max(1), ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Pixels on the sheet so far.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Whether `r` still fits on the sheet.
    pub fn fits(&self, r: &Region) -> bool {
        let (w, h) = (r.width * self.scale, r.height * self.scale);
        w <= MAX_SIDE && self.height + GAP + h <= MAX_SIDE
    }

    /// Adds `regions` in order while they fit (the first always, however large); returns how
    /// many it took. What is not taken is not built.
    pub fn fill(&mut self, regions: impl IntoIterator<Item = Region>) -> usize {
        let mut taken = 0;
        for region in regions {
            if taken > 0 && !self.fits(&region) {
                break;
            }
            self.add(&region);
            taken += 1;
        }
        taken
    }

    /// Adds a region (its index is the order added). Light text on a dark background is inverted:
    /// Tesseract reads dark on light best, and one sheet has one threshold.
    pub fn add(&mut self, r: &Region) {
        let s = self.scale;
        let (w, h) = (r.width * s, r.height * s);
        if r.gray.len() < (r.width * r.height) as usize || w == 0 || h == 0 {
            self.places.push((r.x, r.y, self.height, 0));
            return;
        }
        let mean = r.gray.iter().map(|&p| u64::from(p)).sum::<u64>() / r.gray.len() as u64;
        let invert = mean < 128;
        let px = |x: u32, y: u32| -> u32 {
            let v = r.gray[(y.min(r.height - 1) * r.width + x.min(r.width - 1)) as usize];
            u32::from(if invert { 255 - v } else { v })
        };
        if !self.places.is_empty() {
            for _ in 0..GAP {
                self.rows.push(Vec::new());
            }
            self.height += GAP;
        }
        let top = self.height;
        for y in 0..h {
            let (sy, fy) = (y / s, y % s);
            let row: Vec<u8> = (0..w)
                .map(|x| {
                    let (sx, fx) = (x / s, x % s);
                    // Bilinear enlargement: smooth edges read better than blocky ones.
                    let (a, b, c, d) = (px(sx, sy), px(sx + 1, sy), px(sx, sy + 1), px(sx + 1, sy + 1));
                    let top = a * (s - fx) + b * fx;
                    let bottom = c * (s - fx) + d * fx;
                    ((top * (s - fy) + bottom * fy) / (s * s)) as u8
                })
                .collect();
            self.rows.push(row);
        }
        self.height += h;
        self.width = self.width.max(w);
        self.places.push((r.x, r.y, top, h));
    }

    /// The sheet as a binary PGM (white where no region is), for Tesseract's stdin.
    pub fn pgm(&self) -> Vec<u8> {
        let mut out = format!("P5\n{} {}\n255\n", self.width.max(1), self.height.max(1)).into_bytes();
        for row in &self.rows {
            out.extend_from_slice(row);
            out.extend(std::iter::repeat_n(255u8, (self.width as usize).saturating_sub(row.len())));
        }
        if self.rows.is_empty() {
            out.push(255);
        }
        out
    }

    /// The lines of Tesseract's TSV answer (`tesseract … tsv`), each given to the region it lies
    /// in, in the order read. Words under [`MIN_CONFIDENCE`] or without a letter or digit are
    /// left out; a line left empty is dropped. A word whose pixels are one glyph repeated
    /// ([`Sheet::run_of_one_glyph`]) is that glyph as many times as the pixels show, whatever
    /// Tesseract made of it, and the words it read again over the same pixels are dropped.
    pub fn lines(&self, tsv: &str) -> Vec<Line> {
        struct Word {
            key: (u32, u32, u32),
            text: String,
            rect: [u32; 4],
            conf: f64,
            run: bool,
        }
        let mut words: Vec<Word> = Vec::new();
        for row in tsv.lines().skip(1) {
            let f: Vec<&str> = row.split('\t').collect();
            if f.len() < 12 || f[0] != "5" {
                continue;
            }
            let n = |i: usize| f[i].trim().parse::<u32>().ok();
            let (Some(block), Some(par), Some(line)) = (n(2), n(3), n(4)) else { continue };
            let (Some(left), Some(top), Some(width), Some(height)) = (n(6), n(7), n(8), n(9)) else { continue };
            let conf: f64 = f[10].trim().parse().unwrap_or(-1.0);
            let text = f[11..].join("\t");
            let rect = [left, top, width, height];
            let (text, conf, run) = match self.run_of_one_glyph(text.trim(), rect) {
                Some(run) => (run, 100.0, true),
                None => (text.trim().to_owned(), conf, false),
            };
            words.push(Word { key: (block, par, line), text, rect, conf, run });
        }
        // A glyph run's case from its height: a run lower than the line's other sure words is
        // lowercase (Tesseract reads `xxxx` as `XxXX`; search ignores case, the snippet not).
        for i in 0..words.len() {
            if !words[i].run {
                continue;
            }
            let tallest =
                words.iter().filter(|w| w.key == words[i].key && !w.run && w.conf >= 60.0).map(|w| w.rect[3]).max();
            if tallest.is_some_and(|t| words[i].rect[3] * 100 < t * 85) {
                words[i].text = words[i].text.to_lowercase();
            }
        }
        // What Tesseract read again over a run's pixels (it does, as other lines) is dropped.
        let overlap = |a: [u32; 4], b: [u32; 4]| {
            let w = a[0].saturating_add(a[2]).min(b[0].saturating_add(b[2])).saturating_sub(a[0].max(b[0]));
            let h = a[1].saturating_add(a[3]).min(b[1].saturating_add(b[3])).saturating_sub(a[1].max(b[1]));
            u64::from(w) * u64::from(h)
        };
        let covered = |i: usize| {
            let a = words[i].rect;
            let area = u64::from(a[2]) * u64::from(a[3]);
            words.iter().enumerate().any(|(j, w)| {
                j != i
                    && w.run
                    && (!words[i].run || w.rect[2] > a[2] || (w.rect[2] == a[2] && j < i))
                    && overlap(a, w.rect) * 2 > area
            })
        };
        let kept: Vec<bool> = (0..words.len()).map(|i| !covered(i)).collect();
        let mut out: Vec<Line> = Vec::new();
        let mut current: Option<PendingLine> = None;
        let mut flush = |current: &mut Option<PendingLine>| {
            if let Some((_, words)) = current.take()
                && let Some(line) = self.line(&words)
            {
                out.push(line);
            }
        };
        for (w, _) in words.iter().zip(&kept).filter(|(_, k)| **k) {
            if w.conf < MIN_CONFIDENCE || !w.text.chars().any(char::is_alphanumeric) {
                continue;
            }
            if current.as_ref().is_some_and(|(k, _)| *k != w.key) {
                flush(&mut current);
            }
            current.get_or_insert_with(|| (w.key, Vec::new())).1.push((w.text.clone(), w.rect));
        }
        flush(&mut current);
        out
    }

    /// A sheet pixel (white outside what was drawn).
    fn px(&self, x: u32, y: u32) -> u8 {
        self.rows.get(y as usize).and_then(|r| r.get(x as usize)).copied().unwrap_or(255)
    }

    /// The word at `rect` (sheet pixels) as one glyph repeated, when its pixels are that: at
    /// least [`RUN_MIN`] columns of ink apart, all as wide and as far apart (within 2 px), each
    /// the first one's pixels (their difference under [`RUN_SAME`] % of their ink), and
    /// Tesseract's reading mostly one letter ([`RUN_SHARE`] %). A terminal shows runs like
    /// `xxxx…` or `####` often, and Tesseract counts them badly or not at all (under 30 %
    /// confidence); a monospaced font's glyphs stand apart, so the pixels count them.
    fn run_of_one_glyph(&self, text: &str, rect: [u32; 4]) -> Option<String> {
        let [x0, y0, w, h] = rect;
        let letters: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).collect();
        if w == 0 || h == 0 || x0.max(y0).max(w).max(h) > MAX_SIDE || letters.is_empty() {
            return None;
        }
        let (mode, n) = commonest(letters.iter().flat_map(|c| c.to_lowercase()))?;
        if n * 100 < letters.len() * RUN_SHARE {
            return None;
        }
        // Columns holding ink, as runs: the glyphs.
        let mut glyphs: Vec<(u32, u32)> = Vec::new();
        let mut start = None;
        for x in x0..=x0 + w {
            let ink = x < x0 + w && (y0..y0 + h).any(|y| self.px(x, y) < 255 - RUN_INK);
            match (ink, start) {
                (true, None) => start = Some(x),
                (false, Some(a)) => {
                    glyphs.push((a, x - a));
                    start = None;
                }
                _ => {}
            }
        }
        // A glyph at either end that is not the others' (a cursor after the run, a glyph the
        // region's edge cut in half before it) is left out of the run.
        let n = glyphs.len();
        let run = [&glyphs[..], &glyphs[..n.saturating_sub(1)], &glyphs[n.min(1)..]]
            .into_iter()
            .find(|g| self.same_glyphs(g, y0, h))?;
        // Tesseract's commonest spelling of the letter (its case), as many times as glyphs.
        let glyph = commonest(letters.iter().copied().filter(|c| c.to_lowercase().eq(std::iter::once(mode))))
            .map_or(mode, |(c, _)| c);
        Some(std::iter::repeat_n(glyph, run.len()).collect())
    }

    /// Whether `glyphs` (start column, width) between rows `y0` and `y0 + h` are one glyph
    /// repeated: at least [`RUN_MIN`], as wide and as far apart within 2 px, and each the first
    /// one's pixels.
    fn same_glyphs(&self, glyphs: &[(u32, u32)], y0: u32, h: u32) -> bool {
        if glyphs.len() < RUN_MIN {
            return false;
        }
        let spread = |v: &mut dyn Iterator<Item = u32>| {
            let v: Vec<u32> = v.collect();
            v.iter().max().zip(v.iter().min()).map_or(0, |(a, b)| a - b)
        };
        if spread(&mut glyphs.iter().map(|g| g.1)) > 2 || spread(&mut glyphs.windows(2).map(|p| p[1].0 - p[0].0)) > 2 {
            return false;
        }
        let gw = glyphs.iter().map(|g| g.1).min().unwrap_or(0);
        let (a, _) = glyphs[0];
        glyphs[1..].iter().all(|&(b, _)| {
            let (mut diff, mut ink) = (0u64, 0u64);
            for y in y0..y0 + h {
                for dx in 0..gw {
                    let (p, q) = (self.px(a + dx, y), self.px(b + dx, y));
                    diff += u64::from(p.abs_diff(q));
                    ink += u64::from(255 - p) + u64::from(255 - q);
                }
            }
            diff * 100 < ink.max(1) * RUN_SAME
        })
    }

    /// How sure Tesseract was of each region's words (`tsv` as in [`Sheet::lines`]): the lowest
    /// confidence (0–100) of any word read in it, those left out included; 100 for a region in
    /// which it read no word.
    pub fn confidence(&self, tsv: &str) -> Vec<f64> {
        let mut out = vec![100.0f64; self.places.len()];
        for row in tsv.lines().skip(1) {
            let f: Vec<&str> = row.split('\t').collect();
            if f.len() < 12 || f[0] != "5" || f[11..].join("\t").trim().is_empty() {
                continue;
            }
            let n = |i: usize| f[i].trim().parse::<u32>().ok();
            let (Some(top), Some(height)) = (n(7), n(9)) else { continue };
            let conf: f64 = f[10].trim().parse().unwrap_or(0.0);
            let middle = top.saturating_add(height / 2);
            if let Some(i) = self.places.iter().position(|&(_, _, t, h)| middle >= t && middle < t + h) {
                out[i] = out[i].min(conf);
            }
        }
        out
    }

    /// A line from its words (sheet coordinates): the region it lies in, its text and its
    /// rectangle on the screen.
    fn line(&self, words: &[(String, [u32; 4])]) -> Option<Line> {
        let x0 = words.iter().map(|(_, r)| r[0]).min()?;
        let y0 = words.iter().map(|(_, r)| r[1]).min()?;
        let x1 = words.iter().map(|(_, r)| r[0].saturating_add(r[2])).max()?;
        let y1 = words.iter().map(|(_, r)| r[1].saturating_add(r[3])).max()?;
        let middle = ((u64::from(y0) + u64::from(y1)) / 2) as u32;
        let region = self.places.iter().position(|&(_, _, top, h)| middle >= top && middle < top + h)?;
        let (sx, sy, top, _) = self.places[region];
        let s = self.scale;
        let rect = [
            sx.saturating_add(x0 / s),
            sy.saturating_add(y0.saturating_sub(top) / s),
            (x1 - x0).div_ceil(s),
            (y1 - y0).div_ceil(s),
        ];
        let text = words.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>().join(" ");
        Some(Line { region, text, rect })
    }
}

/// The commonest of `items` and how often it comes (of equals, the last to come first).
fn commonest(items: impl Iterator<Item = char>) -> Option<(char, usize)> {
    let mut counts: Vec<(char, usize)> = Vec::new();
    for c in items {
        match counts.iter_mut().find(|(d, _)| *d == c) {
            Some((_, n)) => *n += 1,
            None => counts.push((c, 1)),
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(x: u32, y: u32, w: u32, h: u32, level: u8) -> Region {
        Region { x, y, width: w, height: h, gray: vec![level; (w * h) as usize] }
    }

    #[test]
    fn regions_are_stacked_enlarged_and_dark_on_light() {
        let mut sheet = Sheet::new(2);
        let mut dark = region(100, 50, 4, 2, 0);
        dark.gray[0] = 255;
        sheet.add(&dark);
        sheet.add(&region(0, 700, 3, 1, 255));
        assert_eq!(sheet.len(), 2);
        let pgm = sheet.pgm();
        let header = b"P5\n8 30\n255\n";
        assert_eq!(&pgm[..header.len()], header);
        let px = &pgm[header.len()..];
        assert_eq!(px.len(), 8 * 30);
        // The dark region is inverted: its one light pixel is now black, the rest white.
        assert_eq!(px[0], 0);
        assert_eq!(px[7], 255);
        // Enlarged 2x: 4 rows; then the gap, white; then the second region, 6 wide, 2 rows,
        // padded white to the sheet's width.
        assert!(px[4 * 8..28 * 8].iter().all(|&p| p == 255));
        assert_eq!(&px[28 * 8..], &[255u8; 16][..]);
        assert_eq!(sheet.pixels(), 8 * 30);
    }

    const HEADER: &str =
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext";

    #[test]
    fn tesseracts_words_become_lines_on_the_screen() {
        let mut sheet = Sheet::new(2);
        sheet.add(&region(100, 50, 200, 20, 255)); // sheet rows 0..40
        sheet.add(&region(10, 600, 300, 30, 255)); // rows 64..124
        let tsv = [
            HEADER,
            "1\t1\t0\t0\t0\t0\t0\t0\t600\t124\t-1\t",
            "4\t1\t1\t1\t1\t0\t10\t8\t300\t24\t-1\t",
            "5\t1\t1\t1\t1\t1\t10\t8\t100\t24\t95.5\techo",
            "5\t1\t1\t1\t1\t2\t120\t10\t180\t22\t91\tzanzibar",
            "5\t1\t1\t1\t1\t3\t310\t10\t20\t22\t12\tq~",
            "5\t1\t1\t1\t2\t1\t0\t40\t10\t10\t90\t|",
            "5\t1\t2\t1\t1\t1\t20\t70\t200\t40\t88.1\tpayroll_db",
        ]
        .join("\n");
        let lines = sheet.lines(&tsv);
        assert_eq!(
            lines,
            vec![
                Line { region: 0, text: "echo zanzibar".into(), rect: [105, 54, 145, 12] },
                Line { region: 1, text: "payroll_db".into(), rect: [20, 603, 100, 20] },
            ]
        );
        // The region's lowest word confidence, the word left out (12) included.
        assert_eq!(sheet.confidence(&tsv), vec![12.0, 88.1]);
        assert_eq!(sheet.confidence(""), vec![100.0, 100.0]);
        assert_eq!(sheet.lines("garbage\nwithout\ttabs"), vec![]);
        assert_eq!(sheet.lines(""), vec![]);
    }

    /// A white region of `glyphs` (each a 6×9 bitmap, '#' ink) drawn at an 8 px pitch from
    /// x = 4, y = 3.
    fn drawn(glyphs: &[&[&str; 9]]) -> Region {
        let (w, h) = (8 * glyphs.len() as u32 + 8, 15);
        let mut gray = vec![250u8; (w * h) as usize];
        for (i, g) in glyphs.iter().enumerate() {
            for (y, row) in g.iter().enumerate() {
                for (x, c) in row.chars().enumerate() {
                    if c == '#' {
                        gray[((3 + y as u32) * w + 4 + 8 * i as u32 + x as u32) as usize] = 20;
                    }
                }
            }
        }
        Region { x: 100, y: 200, width: w, height: h, gray }
    }

    const X: [&str; 9] = ["      ", "      ", "##  ##", " #### ", "  ##  ", " #### ", "##  ##", "      ", "      "];
    const O: [&str; 9] = ["      ", "      ", " #### ", "##  ##", "##  ##", "##  ##", " #### ", "      ", "      "];
    const L: [&str; 9] = ["##    ", "##    ", "##    ", "##    ", "##    ", "##    ", "######", "      ", "      "];
    const CURSOR: [&str; 9] =
        ["####  ", "####  ", "####  ", "####  ", "####  ", "####  ", "####  ", "####  ", "####  "];

    fn word(text: &str, rect: [u32; 4], conf: f64) -> String {
        format!("5\t1\t1\t1\t1\t1\t{}\t{}\t{}\t{}\t{conf}\t{text}", rect[0], rect[1], rect[2], rect[3])
    }

    /// A run of one glyph is counted from its pixels whatever Tesseract read (a wrong length,
    /// other letters, no confidence), a cursor after it is left out, and the pieces Tesseract
    /// read again over the same pixels are dropped; words of different glyphs, and readings
    /// that are not mostly one letter, stay as read.
    #[test]
    fn a_run_of_one_glyph_is_counted_from_its_pixels() {
        let run = |n: usize| drawn(&vec![&X; n]);
        let mut sheet = Sheet::new(1);
        sheet.add(&run(12)); // rows 0..15, glyphs at x = 4 + 8i, 6 wide
        let (x0, w) = (4, 8 * 11 + 6);
        let tsv = [
            HEADER,
            &word("XxXKXXKX", [x0, 3, w, 7], 0.0),
            // Tesseract reads part of it again, as another line: itself a run, inside the first.
            &word("KKK", [x0 + 16, 2, 8 * 3 + 6, 11], 0.0),
        ]
        .join("\n");
        let lines = sheet.lines(&tsv);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].text, "X".repeat(12));

        // A cursor after the run is no glyph of it; a glyph unlike the others stops it.
        let mut sheet = Sheet::new(1);
        let mut glyphs = vec![&X; 9];
        glyphs.push(&CURSOR);
        sheet.add(&drawn(&glyphs));
        let tsv = [HEADER, &word("xxxxxxxP", [4, 3, 8 * 9 + 4, 9], 12.0)].join("\n");
        assert_eq!(sheet.lines(&tsv)[0].text, "x".repeat(9));
        let mut sheet = Sheet::new(1);
        sheet.add(&drawn(&[&X, &X, &O, &X, &X, &X]));
        let tsv = [HEADER, &word("xxoxxx", [4, 3, 8 * 5 + 6, 7], 80.0)].join("\n");
        assert_eq!(sheet.lines(&tsv)[0].text, "xxoxxx", "read as Tesseract read it");
        let tsv = [HEADER, &word("xxoxxx", [4, 3, 8 * 5 + 6, 7], 10.0)].join("\n");
        assert!(sheet.lines(&tsv).is_empty(), "an unsure reading of different glyphs is left out");

        // A run lower than the line's sure words is lowercase.
        let mut sheet = Sheet::new(1);
        sheet.add(&drawn(&[&L, &O, &O, &L, &L, &L, &X, &X, &X, &X, &X]));
        let tsv =
            [HEADER, &word("Lool", [4, 3, 8 * 3 + 6, 7], 95.0), &word("XXXXX", [4 + 8 * 6, 5, 8 * 4 + 6, 5], 3.0)]
                .join("\n");
        assert_eq!(sheet.lines(&tsv)[0].text, "Lool xxxxx");
        // Mostly one letter or no run: the reading decides nothing alone.
        let tsv =
            [HEADER, &word("Lool", [4, 3, 8 * 3 + 6, 7], 95.0), &word("abcde", [4 + 8 * 6, 5, 8 * 4 + 6, 5], 3.0)]
                .join("\n");
        assert_eq!(sheet.lines(&tsv)[0].text, "Lool");
    }

    #[test]
    fn a_sheet_is_bounded() {
        let mut sheet = Sheet::new(2);
        let tall = region(0, 0, 10, 8000, 255);
        assert!(sheet.fits(&tall));
        sheet.add(&tall);
        assert!(!sheet.fits(&tall));
        assert!(!Sheet::new(2).fits(&region(0, 0, 16_000, 10, 255)));
    }
}
