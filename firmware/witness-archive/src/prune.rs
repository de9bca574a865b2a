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

#[cfg(test)]
mod tests {
    use super::*;

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
