//! A measuring tool for the screen-text reader: reads a plain (exported) session video the way
//! the box's `ocr.rs` does (`witness_core::ocr_lines::read`) and prints where the CPU goes; here
//! beside the decoder, it builds without the box (no SQLCipher, no OpenSSL):
//! `cargo run --release -p witness-video --example ocr_probe -- DIR/typing.mp4`. Options by environment: SCALE, PSM, OEM,
//! TESS_EXTRA ("-c a=b -c c=d"), SHEET_PIXELS, BATCH, BATCH_MAX, WORDS (comma separated, found counted),
//! SETTLE_MS (500), NOCACHE (no line cache: every line shown given to Tesseract), MARGIN, SURE,
//! READS_MAX (the line cache's, `witness_core::ocr_lines`), EXPECT (a file of the text the screen showed: every word of it counted, as often as it was
//! shown, against the words read, and every line against the lines read).
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use witness_core::ocr::Sheet;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[13].parse::<f64>().unwrap() + f[14].parse::<f64>().unwrap()) / 100.0
}
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn tesseract(pgm: &[u8]) -> (String, f64) {
    let before = children_cpu();
    let psm = env("PSM", "6".to_string());
    let oem = env("OEM", String::new());
    let extra = env("TESS_EXTRA", String::new());
    let mut cmd = Command::new("tesseract");
    cmd.args(["stdin", "stdout", "-l", "eng", "--psm", &psm]);
    if !oem.is_empty() {
        cmd.args(["--oem", &oem]);
    }
    for a in extra.split_whitespace() {
        cmd.arg(a);
    }
    cmd.arg("tsv");
    let mut child = cmd
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(pgm);
        });
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    child.wait().unwrap();
    (out, children_cpu() - before)
}

fn main() {
    let path = std::env::args().nth(1).expect("a video");
    let scale: u32 = env("SCALE", 2);
    let sheet_pixels: u64 = env("SHEET_PIXELS", 2_000_000);
    let batch_pictures: usize = env("BATCH", 8);
    // Each batch doubles the one before up to this (ocr.rs: 8 doubling to 32).
    let batch_max: usize = env("BATCH_MAX", 32);
    let settle_ms: u64 = env("SETTLE_MS", 500);
    let words: Vec<String> =
        env("WORDS", String::new()).split(',').filter(|w| !w.is_empty()).map(String::from).collect();
    let file = std::fs::File::open(&path).unwrap();
    let own0 = own_cpu();
    let wall0 = Instant::now();
    let mut settler: Option<witness_video::settle::Settler> = None;
    let mut pictures: Vec<Vec<witness_video::settle::Read>> = Vec::new();
    let mut settle_time = Duration::ZERO;
    let mut last = 0.0;
    let frames = witness_video::decode_gray(file, |f| {
        last = f.at.as_secs_f64();
        let t = Instant::now();
        if std::env::var_os("NOSETTLE").is_some() {
            return true;
        }
        let s = settler.get_or_insert_with(|| {
            witness_video::settle::Settler::new(f.width, f.height, Duration::from_millis(settle_ms))
        });
        let reads = s.frame(f.at, f.gray);
        if !reads.is_empty() {
            let _ = s.picture().and_then(|p| witness_video::thumb::png(f.width, f.height, p));
            pictures.push(reads);
        }
        settle_time += t.elapsed();
        true
    })
    .unwrap();
    if let Some(s) = settler.as_mut() {
        let r = s.finish();
        if !r.is_empty() {
            pictures.push(r);
        }
    }
    let decode_cpu = own_cpu() - own0;
    // Batches as ocr.rs makes them.
    let mut batches: Vec<Vec<witness_video::settle::Read>> = vec![Vec::new()];
    let (mut px, mut n) = (0u64, 0usize);
    for p in pictures.iter() {
        for r in p {
            px += u64::from(r.region.width * r.region.height);
            batches.last_mut().unwrap().push(r.clone());
        }
        n += 1;
        let limit = batch_pictures.saturating_mul(1 << (batches.len() - 1).min(8)).min(batch_max.max(batch_pictures));
        if px >= sheet_pixels || n >= limit {
            batches.push(Vec::new());
            px = 0;
            n = 0;
        }
    }
    let own1 = own_cpu();
    let (mut tess_cpu, mut runs, mut sheet_px, mut read_px) = (0.0, 0, 0u64, 0u64);
    let mut text = String::new();
    let mut lines = 0;
    // As ocr.rs: each part cut into lines, a line read before (surely) taken from the cache.
    // NOCACHE: every line given to Tesseract at every occurrence (once per batch); MARGIN, SURE
    // and READS_MAX as in ocr_lines.
    let nocache = std::env::var_os("NOCACHE").is_some();
    let margin: u32 = env("MARGIN", witness_core::ocr_lines::MARGIN);
    let mut cache = witness_core::ocr_lines::LineCache::default();
    cache.sure = env("SURE", cache.sure);
    cache.reads_max = env("READS_MAX", cache.reads_max);
    if nocache {
        (cache.sure, cache.reads_max) = (f64::INFINITY, u32::MAX);
    }
    let mut counts = witness_core::ocr_lines::Counts::default();
    for b in batches.iter().filter(|b| !b.is_empty()) {
        let parts: Vec<Vec<witness_core::ocr_lines::LinePart>> =
            b.iter().map(|r| witness_core::ocr_lines::split_with(&r.sheet_region(), margin)).collect();
        read_px += b.iter().map(|r| u64::from(r.region.width * r.region.height)).sum::<u64>();
        let read = witness_core::ocr_lines::read(&mut cache, &parts, scale, &mut counts, |sheet: &Sheet| {
            let pgm = sheet.pgm();
            if let Ok(d) = std::env::var("DUMP") {
                std::fs::write(format!("{d}/sheet{runs}.pgm"), &pgm).unwrap();
            }
            sheet_px += sheet.pixels();
            let (tsv, cpu) = tesseract(&pgm);
            tess_cpu += cpu;
            runs += 1;
            if std::env::var_os("VERBOSE").is_some() {
                eprintln!("run {runs}: {} lines, sheet {} px, {cpu:.2} s", sheet.len(), sheet.pixels());
            }
            Ok::<_, ()>(tsv)
        })
        .unwrap();
        for l in read.into_iter().flatten() {
            lines += 1;
            text.push_str(&l.0);
            text.push('\n');
        }
    }
    let (new_lines, cached_lines) = (counts.read, counts.cached);
    let sheet_cpu = own_cpu() - own1;
    let per_h = |v: f64| v * 3600.0 / last.max(0.1);
    let found: Vec<String> = witness_core::text::words(&text);
    let hit = words.iter().filter(|w| found.contains(&w.to_lowercase())).count();
    let missed: Vec<&String> = words.iter().filter(|w| !found.contains(&w.to_lowercase())).collect();
    // Exact words: each shown word counts once per time it was shown, hit when read as often.
    let expect = std::env::var("EXPECT").ok().map(|f| std::fs::read_to_string(f).unwrap()).unwrap_or_default();
    let accuracy = (!expect.is_empty()).then(|| {
        let count = |ws: Vec<String>| {
            let mut m = std::collections::HashMap::<String, usize>::new();
            for w in ws {
                *m.entry(w).or_default() += 1;
            }
            m
        };
        let (shown, read) = (count(witness_core::text::words(&expect)), count(found.clone()));
        let total: usize = shown.values().sum();
        let hits: usize = shown.iter().map(|(w, n)| (*n).min(read.get(w).copied().unwrap_or(0))).sum();
        let norm = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        let lines_read: std::collections::HashSet<String> = text.lines().map(norm).collect();
        let shown_lines: Vec<String> = expect.lines().map(norm).filter(|l| !l.is_empty()).collect();
        let exact = shown_lines.iter().filter(|l| lines_read.contains(*l)).count();
        // The bench's `xxxx…` runs of 10–90 letters apart: Tesseract counts a long run of one
        // letter badly whatever it is given.
        let run = |w: &str| w.len() >= 10 && w.chars().all(|c| c == 'x');
        let (total_r, hits_r): (usize, usize) = shown
            .iter()
            .filter(|(w, _)| !run(w))
            .fold((0, 0), |(t, h), (w, n)| (t + n, h + (*n).min(read.get(w).copied().unwrap_or(0))));
        format!(
            " | exact words {hits}/{total} ({:.1} %), without the x runs {hits_r}/{total_r} ({:.1} %), exact lines {exact}/{}",
            hits as f64 * 100.0 / total.max(1) as f64,
            hits_r as f64 * 100.0 / total_r.max(1) as f64,
            shown_lines.len()
        )
    });
    if std::env::var_os("TEXT").is_some() {
        eprintln!("{text}");
    }
    println!(
        "{path}: {last:.1} s video, {frames} frames, {} pictures, {runs} tesseract runs, read {:.2} Mpx, sheets {:.2} Mpx, {lines} lines, {new_lines} to tesseract, {cached_lines} cached | per recorded hour: total {:.1}, decode+settle {:.1} (settle {:.1}), sheets {:.1}, tesseract {:.1} | words {hit}/{} missed {missed:?}{} | wall {:.1}s",
        pictures.len(),
        read_px as f64 / 1e6,
        sheet_px as f64 / 1e6,
        per_h(decode_cpu + sheet_cpu + tess_cpu),
        per_h(decode_cpu),
        per_h(settle_time.as_secs_f64()),
        per_h(sheet_cpu),
        per_h(tess_cpu),
        words.len(),
        accuracy.unwrap_or_default(),
        wall0.elapsed().as_secs_f64(),
    );
}
