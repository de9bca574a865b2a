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
    /// left out; a line left empty is dropped.
    pub fn lines(&self, tsv: &str) -> Vec<Line> {
        let mut out: Vec<Line> = Vec::new();
        let mut current: Option<PendingLine> = None;
        let mut flush = |current: &mut Option<PendingLine>| {
            if let Some((_, words)) = current.take()
                && let Some(line) = self.line(&words)
            {
                out.push(line);
            }
        };
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
            let text = text.trim();
            if conf < MIN_CONFIDENCE || !text.chars().any(char::is_alphanumeric) {
                continue;
            }
            let key = (block, par, line);
            if current.as_ref().is_some_and(|(k, _)| *k != key) {
                flush(&mut current);
            }
            current.get_or_insert_with(|| (key, Vec::new())).1.push((text.to_owned(), [left, top, width, height]));
        }
        flush(&mut current);
        out
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
            let middle = top + height / 2;
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
        let x1 = words.iter().map(|(_, r)| r[0] + r[2]).max()?;
        let y1 = words.iter().map(|(_, r)| r[1] + r[3]).max()?;
        let middle = (y0 + y1) / 2;
        let region = self.places.iter().position(|&(_, _, top, h)| middle >= top && middle < top + h)?;
        let (sx, sy, top, _) = self.places[region];
        let s = self.scale;
        let rect = [sx + x0 / s, sy + (y0.saturating_sub(top)) / s, (x1 - x0).div_ceil(s), (y1 - y0).div_ceil(s)];
        let text = words.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>().join(" ");
        Some(Line { region, text, rect })
    }
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
