//! A recording's after-life at full size: three SSH sessions through the box each record more than
//! 1 GiB and end together, and every recording is sealed, its text extracted, uploaded to a real
//! S3 server (s3s-fs), verified and pruned from the box, then played back from the store in
//! ranges through the console, downloaded whole and exported — while the box's resident memory,
//! sampled from `/proc`, stays under 200 MiB.

use crate::harness::*;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The bound the box must keep, whatever the size of its recordings.
const BOUND_MIB: u64 = 200;
/// Bytes of `x` each session prints after its text: a recording of more than 1 GiB.
const BULK: u64 = 1 << 30;
/// Random bytes each session prints as base64 first: text for the extractor, every word a new
/// one, short of what it keeps at most (`witness_core::text::MAX_TEXT`, 8 MiB) so the word
/// printed last is kept too.
const RANDOM: u64 = 4_500_000;

/// A field of `/proc/PID/status` in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples the box's `VmRSS` every 50 ms until stopped: the highest seen, and a timeline.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Vec<(u64, u64)>>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            let t = Instant::now();
            let mut timeline = Vec::new();
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    m.fetch_max(kib, Ordering::Relaxed);
                    timeline.push((t.elapsed().as_millis() as u64, kib));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            timeline
        });
        Self { stop, max, thread: Some(thread) }
    }

    fn max_mib(&self) -> u64 {
        self.max.load(Ordering::Relaxed) / 1024
    }

    /// The highest `VmRSS` in each 5 s, in MiB, as `SECONDS:MIB`.
    fn finish(mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let timeline = self.thread.take().unwrap().join().unwrap();
        let mut slots: std::collections::BTreeMap<u64, u64> = Default::default();
        for (ms, kib) in timeline {
            let slot = slots.entry(ms / 5000 * 5).or_default();
            *slot = (*slot).max(kib / 1024);
        }
        slots.iter().map(|(s, m)| format!("{s}:{m}")).collect::<Vec<_>>().join(" ")
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A ranged GET of the console into `out`: the status and the response's headers.
fn get_range(w: &crate::web::Web, path: &str, range: &str, out: &Path) -> (String, String) {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let o = Command::new("curl")
        .args(["-sk", "--max-time", "600", "-o"])
        .arg(out)
        .arg("-D")
        .arg(headers.path())
        .args(["-w", "%{http_code}", "-b"])
        .arg(w.jar.path())
        .args(["-H", &format!("Range: bytes={range}")])
        .arg(format!("{}{path}", w.base))
        .output()
        .unwrap();
    (stdout(&o), std::fs::read_to_string(headers.path()).unwrap())
}

/// Bytes `a..=z` of a file.
fn file_range(path: &Path, a: u64, z: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(a)).unwrap();
    let mut buf = vec![0; (z - a + 1) as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Three sessions end at once, each with a recording of more than 1 GiB (the text the extractor
/// keeps at most, then a gigabyte of output), and each is sealed, made searchable, uploaded,
/// verified and pruned from the box (`keep_local_days = 0`, so its text may be read from the
/// store); one is then played back from the store in ranges through the console (its start,
/// middle and end, each compared with the export), downloaded whole and exported. The box's peak
/// resident set (`VmHWM`, reset as the sessions start, and `VmRSS` sampled throughout) and the
/// export's stay under 200 MiB: nothing along the way holds a recording, or a part of it that
/// grows with it, in memory, wherever it is read from.
#[test]
fn three_1gib_recordings_ending_at_once_keep_the_box_under_200_mib() {
    let t = Instant::now();
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    b.configure("store", "keep_local_days = 0");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    let pid = b.pid();
    // Peak memory from here on (`5` resets VmHWM to the current size).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = status_kib(pid, "VmHWM:").unwrap() / 1024;
    let sampler = RssSampler::start(pid);

    let words = ["quokkamarker0", "quokkamarker1", "quokkamarker2"];
    let sessions: Vec<_> = words
        .iter()
        .map(|w| {
            b.ssh("alice@web01")
                .arg(format!(
                    "echo begin; head -c {RANDOM} /dev/urandom | base64; head -c {BULK} /dev/zero | tr '\\0' x; echo; echo {w} done"
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for s in sessions {
        let out = s.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let recorded = t.elapsed();
    eprintln!("recorded by {recorded:?}, VmHWM {} MiB", status_kib(pid, "VmHWM:").unwrap() / 1024);
    // What each user received, byte for byte: the raw recording's length.
    let b64 = RANDOM.div_ceil(3) * 4;
    let printed =
        |w: &str| "begin\n".len() as u64 + b64 + b64.div_ceil(76) + BULK + 1 + format!("{w} done\n").len() as u64;

    let recs = eventually(900, "every recording sealed, uploaded, verified and pruned", || {
        let r = b.recordings();
        (r.len() == 3
            && r.iter().all(|r| r["status"] == "uploaded" && !b.data().join(r["path"].as_str().unwrap()).exists()))
        .then_some(r)
    });
    let uploaded = t.elapsed();
    eprintln!("uploaded by {uploaded:?}, VmHWM {} MiB", status_kib(pid, "VmHWM:").unwrap() / 1024);
    for r in &recs {
        assert!(r["bytes"].as_u64().unwrap() > BULK, "the recording at rest is over 1 GiB: {r}");
        assert!(r["sha256"].is_string(), "sealed: {r}");
        // The store holds the recording whole, and its signed manifest beside it.
        let key = format!(
            "{}/{}/{}/{}.cast",
            box_id(&b),
            &r["started_at"].as_str().unwrap()[..10],
            r["session_id"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let stored = s3.dir.path().join(S3_BUCKET).join(&key);
        assert_eq!(std::fs::metadata(&stored).map(|m| m.len()).ok(), r["bytes"].as_u64(), "{key} is stored whole");
        assert!(stored.with_extension("manifest.json").is_file(), "{key}'s signed manifest is stored beside it");
    }
    let st = b.json(&["sync", "status", "--json"]);
    assert_eq!(st["pending"], 0, "nothing waits: {st}");

    // One recording exported from the store — the raw bytes the user received, and the player's
    // cast, each export's peak memory by `time -f %M` (KiB) — while the console plays its start
    // (the first request counts the player's length) and the box may still read the others' text.
    let first = &recs[0];
    let id = first["id"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir_in(b.dir.path()).unwrap();
    let (raw, cast) = (dir.path().join("raw"), dir.path().join("cast"));
    let export = |out: &Path, raw: bool| {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M"]).arg(witness_bin());
        c.arg("--data").arg(b.data()).args(["recordings", "export", &id, "--out"]).arg(out);
        if raw {
            c.arg("--raw");
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let exports = [export(&raw, true), export(&cast, false)];
    let mut web = crate::web::Web::new(&b);
    assert_eq!(web.login("audrey", "audrey-passwd").status, 200);
    let path = format!("/api/v1/recordings/{id}/content");
    let start = dir.path().join("start");
    let (code, headers) = get_range(&web, &path, "0-65535", &start);
    assert_eq!(code, "206", "{headers}");
    let mut export_mib = 0;
    for e in exports {
        let out = e.wait_with_output().unwrap();
        assert!(out.status.success(), "export: {}", stderr(&out));
        let kib = stderr(&out).lines().last().and_then(|l| l.trim().parse::<u64>().ok()).unwrap();
        export_mib = export_mib.max(kib / 1024);
    }
    let raw_len = std::fs::metadata(&raw).unwrap().len();
    let tail = String::from_utf8(file_range(&raw, raw_len - 20, raw_len - 1)).unwrap();
    let w = words
        .iter()
        .find(|w| tail.ends_with(&format!("{w} done\n")))
        .unwrap_or_else(|| panic!("the raw export ends {tail:?}"));
    assert_eq!(raw_len, printed(w), "the raw export is every byte the user received");
    assert_eq!(file_range(&raw, 0, 5), b"begin\n");
    std::fs::remove_file(&raw).unwrap();
    let len = std::fs::metadata(&cast).unwrap().len();
    assert!(len > BULK, "the exported cast holds the gigabyte: {len}");
    let exported = t.elapsed();

    // Played back through the console in ranges: its start, middle and end are the export's.
    assert!(headers.to_lowercase().contains(&format!("content-range: bytes 0-65535/{len}")), "{headers}");
    assert!(std::fs::read(&start).unwrap() == file_range(&cast, 0, 65_535), "the start is the export's");
    let got = dir.path().join("range");
    for (a, z) in [(len / 2, len / 2 + 65_535), (len - 65_536, len - 1), (len / 3, len / 3 + (8 << 20))] {
        let (code, headers) = get_range(&web, &path, &format!("{a}-{z}"), &got);
        assert_eq!(code, "206", "range {a}-{z}: {headers}");
        assert!(headers.to_lowercase().contains(&format!("content-range: bytes {a}-{z}/{len}")), "{headers}");
        assert!(std::fs::read(&got).unwrap() == file_range(&cast, a, z), "range {a}-{z} is the export's bytes");
    }
    // Downloaded whole through the console: the box streams every byte from the store.
    let headers = tempfile::NamedTempFile::new().unwrap();
    let o = Command::new("curl")
        .args(["-sk", "--max-time", "900", "-o"])
        .arg(&got)
        .arg("-D")
        .arg(headers.path())
        .args(["-w", "%{http_code}", "-b"])
        .arg(web.jar.path())
        .arg(format!("{}{path}?download=1", web.base))
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "200", "{}", std::fs::read_to_string(headers.path()).unwrap());
    let whole = std::fs::metadata(&got).unwrap().len();
    assert_eq!(whole, len, "the whole recording downloaded, the player's bytes as exported");
    let played = t.elapsed();
    drop(dir);

    // Each recording's text was read to its end: its last word, printed after the gigabyte, is
    // found. Storing the text never holds the index's write lock past a command's wait for it.
    let mut refused = Vec::new();
    for w in words {
        let start = Instant::now();
        let hits = loop {
            let out = b.cli(&["search", w, "--json"], None);
            if !out.status.success() {
                refused.push(format!("{:?}: {}", t.elapsed(), stderr(&out)));
            } else {
                let hits: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
                if !hits.is_empty() {
                    break hits;
                }
            }
            if start.elapsed() > Duration::from_secs(900) {
                let log = b.log();
                let lines: Vec<&str> =
                    log.lines().filter(|l| l.contains("witness::pipeline") || l.contains("extract")).collect();
                panic!("{w} was not found within 900 s; the box said: {lines:#?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(hits.len(), 1, "{w}: {hits:?}");
        assert!(hits[0]["snippet"].as_str().unwrap().contains(w), "{hits:?}");
        assert_eq!(hits[0]["source"], "output");
    }
    let extracted = t.elapsed();
    assert!(refused.is_empty(), "`witness search` was refused while the box stored text: {refused:?}");

    let peak = status_kib(pid, "VmHWM:").unwrap() / 1024;
    let sampled = sampler.max_mib();
    eprintln!("the box's VmRSS, highest per 5 s (s:MiB): {}", sampler.finish());
    eprintln!(
        "three {}-byte recordings: box VmHWM {before} MiB at the start, {peak} MiB peak (VmRSS sampled: {sampled} \
         MiB); recorded by {recorded:?}, uploaded, verified and pruned by {uploaded:?}, exported from the store by \
         {exported:?} (the export's peak RSS {export_mib} MiB), played in ranges and downloaded whole by \
         {played:?}, searchable by {extracted:?}",
        first["bytes"]
    );
    assert!(peak < BOUND_MIB, "the box's peak RSS was {peak} MiB (from {before} MiB; sampled {sampled} MiB)");
    assert!(export_mib < BOUND_MIB, "an export's peak RSS was {export_mib} MiB");
}
