//! Arbitrary TSV answers (what a Tesseract process hands back, its input a sheet of screen pixels
//! nobody vouches for) over a sheet of arbitrary small regions: no panic, every line given to a
//! region of the sheet and holding a letter or digit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::ocr::{Region, Sheet};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_at_checked(4) else { return };
    let (w, h) = (u32::from(head[0] % 64) + 1, u32::from(head[1] % 32) + 1);
    let regions = usize::from(head[2] % 3) + 1;
    let size = (w * h) as usize;
    let Some((pixels, tsv)) = rest.split_at_checked(size.min(rest.len())) else { return };
    let mut sheet = Sheet::new(u32::from(head[3] % 3) + 1);
    for i in 0..regions {
        let mut gray = pixels.to_vec();
        gray.resize(size, 255);
        sheet.add(&Region { x: 10 * i as u32, y: 5 * i as u32, width: w, height: h, gray });
    }
    let tsv = String::from_utf8_lossy(tsv);
    for line in sheet.lines(&tsv) {
        assert!(line.region < sheet.len());
        assert!(line.text.chars().any(char::is_alphanumeric));
    }
    let _ = sheet.confidence(&tsv);
});
