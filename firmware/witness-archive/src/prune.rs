//! Which local copies may be deleted. Only copies verified in the store are candidates (the
//! index hands them over, oldest first, held ones left out); this decides among them.

/// The copies to delete now: those past the local keep time, and, while the disk is above its
/// high watermark, every other verified copy too (oldest first, after them), each once.
pub fn select<T: PartialEq + Clone>(past_keep: &[T], all_verified: &[T], over_watermark: bool) -> Vec<T> {
    let mut out = past_keep.to_vec();
    if over_watermark {
        for v in all_verified {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
    }
    out
}

/// What the prune step does with one verified local copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Delete it now.
    Now,
    /// Keep it; look again at this time (unix ms).
    KeepUntil(i64),
}

/// How long a held or in-keep-time copy waits before it is looked at again at most (a hold
/// cleared, or the disk past its watermark, is noticed this soon).
pub const RECHECK_MS: i64 = 60 * 1000;

/// The prune step's choice for a copy verified in the store that ended at `ended_ms`: kept while
/// its session is held, until `keep_ms` after it ended — unless the disk is past its high
/// watermark, when every verified copy may go.
pub fn decide(ended_ms: i64, keep_ms: i64, now_ms: i64, over_watermark: bool, held: bool) -> Decision {
    if held {
        return Decision::KeepUntil(now_ms + RECHECK_MS);
    }
    let until = ended_ms.saturating_add(keep_ms);
    if over_watermark || until <= now_ms { Decision::Now } else { Decision::KeepUntil(until.min(now_ms + RECHECK_MS)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_goes_after_its_keep_time_or_past_the_watermark_never_while_held() {
        let day = 86_400_000;
        assert_eq!(decide(0, 0, 0, false, false), Decision::Now, "keep 0 days: at once");
        assert_eq!(decide(0, day, 5, false, false), Decision::KeepUntil(5 + RECHECK_MS), "looked at again soon");
        assert_eq!(decide(0, day, day - 10, false, false), Decision::KeepUntil(day), "its time, if sooner");
        assert_eq!(decide(0, day, day, false, false), Decision::Now);
        assert_eq!(decide(0, day, 5, true, false), Decision::Now, "past the watermark");
        assert_eq!(decide(0, 0, 5, true, true), Decision::KeepUntil(5 + RECHECK_MS), "a hold wins over all");
        assert_eq!(decide(i64::MAX, i64::MAX, 0, false, false), Decision::KeepUntil(RECHECK_MS), "no overflow");
    }

    #[test]
    fn under_the_watermark_only_what_is_past_its_keep_time() {
        assert_eq!(select(&["a"], &["x", "a", "y"], false), vec!["a"]);
        assert_eq!(select::<&str>(&[], &["x"], false), Vec::<&str>::new());
    }

    #[test]
    fn over_the_watermark_every_verified_copy_oldest_first_once() {
        assert_eq!(select(&["a"], &["x", "a", "y"], true), vec!["a", "x", "y"]);
        assert_eq!(select::<&str>(&[], &[], true), Vec::<&str>::new());
    }
}
