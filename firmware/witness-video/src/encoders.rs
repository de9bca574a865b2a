//! Which H.264 encoder to use: the hardware encoders of the SoCs we target first, then software.
//! Encoders are never picked by GStreamer rank (a high-ranked element may fail on its first
//! buffer); each is proven by running a short pipeline to end-of-stream with a keyframe.

use crate::VideoError;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::time::Duration;

/// One encoder we know how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// GStreamer element name.
    pub element: &'static str,
    pub hardware: bool,
    /// Where it is found.
    pub platform: &'static str,
    /// Raw format the encoder takes.
    pub format: &'static str,
    /// Properties for low-latency screen content with a keyframe every 300 frames (30 s of a
    /// busy screen, 5 min of a still one): a 1080p desktop's keyframe is ~250 KB, and one every
    /// 10 frames made a typing session 450 MB/h (`cargo xtask bench --only video`). Players seek
    /// by decoding from the keyframe before; a crash loses nothing more (fragments need none).
    /// x264 (measured on a recorded 1080p terminal session, `cargo xtask bench --only video`):
    /// quality-based with a constant QP across frames (`qcomp=1`; x264's default lets a frame
    /// with little change take a lower QP, re-spending bits on an unchanged screen) under a
    /// 2 Mbit/s VBV ceiling for full-motion screens; UMH motion search over ±64 px finds a
    /// scrolled terminal (the default diamond search does not, and codes every scroll afresh:
    /// 3× the bytes); CABAC; one thread (a frame is a few ms; threads cost more in hand-offs).
    pub props: &'static str,
    /// Caps downstream of the encoder that some drivers insist on.
    pub out_caps: &'static str,
    /// The device nodes a hardware encoder works through, as path prefixes (`/dev/video`
    /// matches `/dev/video11`); empty for software.
    pub devices: &'static [&'static str],
}

/// In order of preference.
pub const CANDIDATES: &[Candidate] = &[
    Candidate {
        element: "v4l2h264enc",
        hardware: true,
        platform: "Raspberry Pi 4, i.MX8M Plus (V4L2 memory-to-memory)",
        format: "I420",
        props: "extra-controls=\"controls,video_gop_size=300\"",
        out_caps: "video/x-h264,level=(string)4",
        devices: &["/dev/video"],
    },
    Candidate {
        element: "mpph264enc",
        hardware: true,
        platform: "Rockchip RK3588 (MPP)",
        format: "NV12",
        props: "gop=300",
        out_caps: "video/x-h264",
        devices: &["/dev/mpp_service"],
    },
    Candidate {
        element: "nvv4l2h264enc",
        hardware: true,
        platform: "NVIDIA Jetson",
        format: "I420",
        props: "iframeinterval=300",
        out_caps: "video/x-h264",
        devices: &["/dev/nvhost-msenc", "/dev/v4l2-nvenc"],
    },
    Candidate {
        element: "vah264enc",
        hardware: true,
        platform: "Intel (VA-API, GStreamer va plugin)",
        format: "NV12",
        props: "key-int-max=300",
        out_caps: "video/x-h264",
        devices: &["/dev/dri/renderD"],
    },
    Candidate {
        element: "vaapih264enc",
        hardware: true,
        platform: "Intel (gstreamer-vaapi)",
        format: "NV12",
        props: "keyframe-period=300",
        out_caps: "video/x-h264",
        devices: &["/dev/dri/renderD"],
    },
    Candidate {
        element: "qsvh264enc",
        hardware: true,
        platform: "Intel Quick Sync",
        format: "NV12",
        props: "gop-size=300",
        out_caps: "video/x-h264",
        devices: &["/dev/dri/renderD"],
    },
    Candidate {
        element: "x264enc",
        hardware: false,
        platform: "software (x264)",
        format: "I420",
        props: "speed-preset=ultrafast tune=zerolatency key-int-max=300 bframes=0 threads=1 cabac=true me=umh pass=qual quantizer=23 bitrate=2048 vbv-buf-capacity=1000 option-string=\"merange=64:qcomp=1.0\"",
        out_caps: "video/x-h264,profile=(string)high",
        devices: &[],
    },
    Candidate {
        element: "openh264enc",
        hardware: false,
        platform: "software (OpenH264)",
        format: "I420",
        props: "gop-size=300 complexity=low",
        out_caps: "video/x-h264",
        devices: &[],
    },
];

pub fn candidate(element: &str) -> Option<&'static Candidate> {
    CANDIDATES.iter().find(|c| c.element == element)
}

/// The order to try: a pinned encoder alone, else every candidate.
pub fn order(pinned: Option<&str>) -> Result<Vec<&'static Candidate>, VideoError> {
    match pinned {
        Some(p) => candidate(p).map(|c| vec![c]).ok_or_else(|| VideoError::UnknownEncoder {
            name: p.to_owned(),
            known: CANDIDATES.iter().map(|c| c.element).collect(),
        }),
        None => Ok(CANDIDATES.iter().collect()),
    }
}

/// What probing one encoder found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub element: &'static str,
    pub usable: bool,
    /// Why it was skipped, or what it produced.
    pub detail: String,
}

/// What a probe says of an element GStreamer does not have.
pub const NOT_INSTALLED: &str = "element not installed";

/// How opening one of a hardware encoder's device nodes went, as the daemon's sandbox sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAccess {
    Opened,
    /// EACCES/EPERM: the node is there, the sandbox or its mode keeps the daemon out.
    Denied,
    /// Any other error (busy, gone, no such device behind the node).
    Failed,
}

/// One device node found for a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: String,
    pub access: NodeAccess,
}

/// Why an encoder is or is not used, as a field engineer needs it: a missing device, a
/// sandbox or group that keeps the daemon from it, and a device that is there but does not
/// encode are different fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Usable,
    /// A hardware encoder whose device node does not exist here.
    NoDevice,
    /// A hardware encoder whose device nodes exist but none opens: permissions or the sandbox.
    PermissionDenied,
    /// A hardware encoder with a node the daemon can open, whose test pipeline failed (or whose
    /// GStreamer element is missing).
    DeviceEncoderFailed,
    /// A software encoder GStreamer does not have.
    NotInstalled,
    /// A software encoder whose test pipeline failed.
    EncoderFailed,
}

impl Reason {
    /// The stable text `witness encoders --json` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Usable => "usable",
            Reason::NoDevice => "no device",
            Reason::PermissionDenied => "permission denied",
            Reason::DeviceEncoderFailed => "device present, encoder failed",
            Reason::NotInstalled => "not installed",
            Reason::EncoderFailed => "encoder failed",
        }
    }
}

/// Classifies a probe with what the device nodes said (no I/O: the caller looked at the nodes).
/// For hardware the nodes decide first: GStreamer registers some hardware elements (V4L2) only
/// when it could open their device, so "not installed" there usually means "not reachable".
pub fn classify(c: &Candidate, nodes: &[DeviceNode], probe: &Probe) -> Reason {
    if probe.usable {
        return Reason::Usable;
    }
    if !c.hardware {
        return if probe.detail == NOT_INSTALLED { Reason::NotInstalled } else { Reason::EncoderFailed };
    }
    if nodes.is_empty() {
        Reason::NoDevice
    } else if nodes.iter().any(|n| n.access == NodeAccess::Opened) {
        Reason::DeviceEncoderFailed
    } else if nodes.iter().any(|n| n.access == NodeAccess::Denied) {
        Reason::PermissionDenied
    } else {
        Reason::DeviceEncoderFailed
    }
}

/// The encode part of a pipeline for `c` (after a converter, before the parser).
pub fn encode_chain(c: &Candidate, size: Option<(u32, u32)>) -> String {
    // A fixed size here makes a scaler in front of the chain fit every input into it.
    let size = size.map(|(w, h)| format!(",width={w},height={h},pixel-aspect-ratio=1/1")).unwrap_or_default();
    format!("video/x-raw,format={}{size} ! {} {} ! {}", c.format, c.element, c.props, c.out_caps)
}

/// Runs a short pipeline through `element` to end-of-stream and checks a keyframe came out.
/// Some drivers reach PLAYING and fail on the first buffer; some hang: the timeout covers both
/// (the binary runs this in a child process, so a wedged driver cannot take the daemon along).
pub fn probe_one(element: &str, timeout: Duration) -> Probe {
    let Some(c) = candidate(element) else {
        return Probe { element: "unknown", usable: false, detail: format!("{element} is not a known encoder") };
    };
    let result = (|| -> Result<String, String> {
        crate::init().map_err(|e| e.to_string())?;
        if gst::ElementFactory::find(c.element).is_none() {
            return Err(NOT_INSTALLED.into());
        }
        let desc = format!(
            "videotestsrc num-buffers=15 pattern=smpte ! video/x-raw,width=320,height=240,framerate=10/1 ! \
             videoconvert ! {} ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=out sync=false",
            encode_chain(c, None)
        );
        let pipeline = gst::parse::launch(&desc).map_err(|e| format!("pipeline: {e}"))?;
        let pipeline = pipeline.downcast::<gst::Pipeline>().map_err(|_| "not a pipeline".to_owned())?;
        let sink =
            pipeline.by_name("out").ok_or("no sink")?.downcast::<gstreamer_app::AppSink>().map_err(|_| "no appsink")?;
        pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot start: {e}"))?;
        let (mut frames, mut keyframes, mut bytes) = (0u32, 0u32, 0usize);
        let deadline = std::time::Instant::now() + timeout;
        let outcome = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Err(format!("no end-of-stream within {} s", timeout.as_secs()));
            }
            match sink.try_pull_sample(gst::ClockTime::from_mseconds(left.as_millis().min(200) as u64)) {
                Some(s) => {
                    if let Some(b) = s.buffer() {
                        frames += 1;
                        bytes += b.size();
                        if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                            keyframes += 1;
                        }
                    }
                }
                None if sink.is_eos() => break Ok(()),
                None => {
                    if let Some(msg) = pipeline.bus().and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
                        && let gst::MessageView::Error(e) = msg.view()
                    {
                        break Err(format!("{}", e.error()));
                    }
                }
            }
        };
        let _ = pipeline.set_state(gst::State::Null);
        outcome?;
        if frames == 0 || keyframes == 0 {
            return Err(format!("produced {frames} frames and {keyframes} keyframes"));
        }
        Ok(format!("{frames} frames, {keyframes} keyframes, {bytes} bytes"))
    })();
    match result {
        Ok(detail) => Probe { element: c.element, usable: true, detail },
        Err(detail) => Probe { element: c.element, usable: false, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_comes_first_and_software_last() {
        let first_soft = CANDIDATES.iter().position(|c| !c.hardware).unwrap();
        assert!(CANDIDATES[..first_soft].iter().all(|c| c.hardware));
        assert!(CANDIDATES[first_soft..].iter().all(|c| !c.hardware));
        assert_eq!(order(None).unwrap().len(), CANDIDATES.len());
        assert_eq!(order(Some("x264enc")).unwrap()[0].element, "x264enc");
        let err = order(Some("nvenc")).unwrap_err().to_string();
        assert!(err.contains("x264enc"), "{err}");
    }

    fn probe(element: &'static str, usable: bool, detail: &str) -> Probe {
        Probe { element, usable, detail: detail.to_owned() }
    }

    fn node(path: &str, access: NodeAccess) -> DeviceNode {
        DeviceNode { path: path.to_owned(), access }
    }

    #[test]
    fn a_hardware_encoder_says_which_of_device_permission_and_encoder_is_wrong() {
        let v4l2 = candidate("v4l2h264enc").unwrap();
        let failed = probe("v4l2h264enc", false, NOT_INSTALLED);
        // No node at all: the board has no such encoder (or its driver is not loaded).
        assert_eq!(classify(v4l2, &[], &failed), Reason::NoDevice);
        // Nodes there, none opens for lack of permission: the sandbox or the groups.
        let denied = [node("/dev/video10", NodeAccess::Denied), node("/dev/video11", NodeAccess::Denied)];
        assert_eq!(classify(v4l2, &denied, &failed), Reason::PermissionDenied);
        // One opens (a capture node may refuse while the encoder opens): the encoder failed.
        let mixed = [node("/dev/video0", NodeAccess::Denied), node("/dev/video11", NodeAccess::Opened)];
        assert_eq!(classify(v4l2, &mixed, &probe("v4l2h264enc", false, "cannot start")), Reason::DeviceEncoderFailed);
        assert_eq!(classify(v4l2, &mixed, &failed), Reason::DeviceEncoderFailed, "element missing, device there");
        // Busy or broken nodes are no permission problem.
        let busy = [node("/dev/mpp_service", NodeAccess::Failed)];
        assert_eq!(classify(candidate("mpph264enc").unwrap(), &busy, &failed), Reason::DeviceEncoderFailed);
        assert_eq!(classify(v4l2, &mixed, &probe("v4l2h264enc", true, "15 frames")), Reason::Usable);
        // The three reasons a field engineer must tell apart read differently.
        let texts = [Reason::NoDevice, Reason::PermissionDenied, Reason::DeviceEncoderFailed].map(Reason::as_str);
        assert_eq!(texts, ["no device", "permission denied", "device present, encoder failed"]);
    }

    #[test]
    fn software_encoders_need_no_device() {
        let x264 = candidate("x264enc").unwrap();
        assert!(x264.devices.is_empty());
        assert_eq!(classify(x264, &[], &probe("x264enc", false, NOT_INSTALLED)), Reason::NotInstalled);
        assert_eq!(classify(x264, &[], &probe("x264enc", false, "cannot start")), Reason::EncoderFailed);
        assert_eq!(classify(x264, &[], &probe("x264enc", true, "ok")), Reason::Usable);
        // Every hardware candidate names the nodes it needs.
        assert!(CANDIDATES.iter().filter(|c| c.hardware).all(|c| !c.devices.is_empty()));
    }

    /// The image keeps only the GStreamer plugins `rootfs/gstreamer-plugins.txt` names: every
    /// element the encoder table and the pipelines use must be in it, or the box loses it.
    #[test]
    fn the_image_keeps_every_element_we_name() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rootfs/gstreamer-plugins.txt");
        let text = std::fs::read_to_string(path).unwrap();
        let listed: Vec<&str> =
            text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.split_whitespace().skip(1)).collect();
        let pipelines = ["appsrc", "appsink", "videoconvert", "videoscale", "videotestsrc", "h264parse", "mp4mux"];
        for element in CANDIDATES.iter().map(|c| c.element).chain(pipelines) {
            assert!(listed.contains(&element), "{element} is not in rootfs/gstreamer-plugins.txt");
        }
    }

    #[test]
    fn software_encoders_on_this_machine_prove_themselves() {
        let p = probe_one("x264enc", Duration::from_secs(20));
        assert!(p.usable, "{p:?}");
        assert!(p.detail.contains("keyframes"));
        // An element that is not installed is skipped with the reason.
        let p = probe_one("mpph264enc", Duration::from_secs(5));
        assert!(!p.usable && p.detail.contains("not installed"), "{p:?}");
    }
}
