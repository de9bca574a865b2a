//! Session output in arbitrary events and an arbitrary query: every match the extractor's text
//! gives lies inside its line, and its time is that of an event that printed part of the line,
//! never before the line began.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::text::{TextExtractor, find_matches, parse_query};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (query, output) = text.split_once('\u{0}').unwrap_or(("a", &text));
    let mut x = TextExtractor::default();
    for (i, event) in output.split('\u{1}').enumerate() {
        x.output(i as f64 * 0.5, event);
    }
    let terms = parse_query(query);
    for c in x.finish() {
        assert_eq!(c.line_times.len(), c.text.lines().count());
        assert_eq!(c.line_steps.len(), c.line_times.len());
        for m in find_matches(&c.text, &c.line_times, &c.line_steps, &terms) {
            let line = c.text.lines().nth(m.line).expect("a match is on a line");
            assert!(m.start < m.end && m.end <= line.chars().count(), "{m:?} in {line:?}");
            assert!(m.at >= c.line_times[m.line], "{m:?} before its line began");
        }
    }
});
