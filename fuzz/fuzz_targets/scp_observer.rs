//! The scp observer reads whatever a user or target sends on an `scp -t/-f` exec: never panic,
//! the content ranges it reports lie inside the piece and in order, and the split of the stream
//! changes neither the files nor the content found.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::scp::{Mode, ScpObserver};

fuzz_target!(|data: &[u8]| {
    let run = |piece: usize| {
        let mut o = ScpObserver::new(Mode::Sink);
        let (mut files, mut content) = (Vec::new(), Vec::new());
        for p in data.chunks(piece.max(1)) {
            let (f, ranges) = o.sent(p);
            let mut at = 0;
            for r in ranges {
                assert!(r.start >= at && r.end <= p.len() && r.start <= r.end);
                at = r.end;
                content.extend_from_slice(&p[r]);
            }
            files.extend(f);
        }
        files.extend(o.finish());
        (files, content)
    };
    assert_eq!(run(data.len()), run(7));
});
