//! Session video on the box. Owns GStreamer: the encoder choice (hardware encoders of the SoCs we
//! target first, proven by a test pipeline, then x264/OpenH264), the live recorder (frames in,
//! fragmented MP4 bytes out to a sink the caller encrypts and fsyncs), and reading a sealed video
//! back as grey pictures with the frames worth reading for text (`frames`, `settle`). The fragmented stream is
//! the recording: players read it as it is, and a crash-cut one is trimmed to its last whole
//! fragment (`witness_core::fmp4`).

mod canvas;
pub mod encoders;
mod frames;
mod recorder;
pub mod settle;
pub mod thumb;

pub use canvas::{Pointer, Rows};
pub use encoders::{
    CANDIDATES, Candidate, DeviceNode, NodeAccess, Probe, Reason, candidate, classify, order, probe_one,
};
pub use frames::{GrayFrame, decode_gray};
pub use recorder::{ByteSink, VideoRecorder, VideoSettings, VideoSummary};

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("gstreamer cannot start: {0}")]
    Init(String),
    #[error("unknown encoder {name:?}; known: {}", known.join(", "))]
    UnknownEncoder { name: String, known: Vec<&'static str> },
    #[error("no usable H.264 encoder: {0}")]
    NoEncoder(String),
    #[error("video pipeline: {0}")]
    Pipeline(String),
    #[error("video size {0}x{1} is too small")]
    Size(u32, u32),
    #[error("bad frame: {0}")]
    Frame(String),
    #[error("writing the video: {0}")]
    Sink(String),
    #[error("reading the video: {0}")]
    Source(String),
}

/// Initialises GStreamer once per process.
pub fn init() -> Result<(), VideoError> {
    gstreamer::init().map_err(|e| VideoError::Init(e.to_string()))
}

/// The first usable encoder in `order`, with what probing found for each one tried.
pub fn choose(
    order: &[&'static Candidate],
    mut probe: impl FnMut(&'static Candidate) -> Probe,
) -> (Option<&'static Candidate>, Vec<Probe>) {
    let mut seen = Vec::new();
    for c in order {
        let p = probe(c);
        let usable = p.usable;
        seen.push(p);
        if usable {
            return (Some(c), seen);
        }
    }
    (None, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardware present on a board is simulated by which probes succeed.
    #[test]
    fn the_first_encoder_that_proves_itself_wins() {
        let works = |names: &'static [&'static str]| {
            move |c: &'static Candidate| Probe {
                element: c.element,
                usable: names.contains(&c.element),
                detail: if names.contains(&c.element) { "ok".into() } else { "element not installed".into() },
            }
        };
        // A Rockchip board with x264 installed too: the hardware encoder is chosen.
        let (chosen, seen) = choose(&order(None).unwrap(), works(&["mpph264enc", "x264enc"]));
        assert_eq!(chosen.unwrap().element, "mpph264enc");
        assert_eq!(seen.iter().map(|p| p.element).collect::<Vec<_>>(), ["v4l2h264enc", "mpph264enc"]);
        // A Pi 5 (no hardware encoder): software.
        let (chosen, seen) = choose(&order(None).unwrap(), works(&["openh264enc"]));
        assert_eq!(chosen.unwrap().element, "openh264enc");
        assert_eq!(seen.len(), CANDIDATES.len());
        // Pinned to something absent: nothing, and the reason.
        let (chosen, seen) = choose(&order(Some("vah264enc")).unwrap(), works(&["x264enc"]));
        assert!(chosen.is_none());
        assert_eq!(seen[0].detail, "element not installed");
    }
}
