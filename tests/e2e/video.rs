//! The box's choice of H.264 encoder for RDP video, probed on this machine's real GStreamer.

use crate::harness::*;

#[test]
fn encoders_lists_what_works_and_honours_a_pin() {
    let b = Box::new();
    let out = b.ok(&["encoders"], None);
    // This machine has no hardware encoder: each is skipped with its reason, x264 is used.
    assert!(out.contains("v4l2h264enc") && out.contains("element not installed"), "{out}");
    assert!(out.contains("using x264enc"), "{out}");
    let json = b.json(&["encoders", "--json"]);
    assert_eq!(json["chosen"], "x264enc");
    assert!(json["probes"].as_array().unwrap().iter().any(|p| p["element"] == "x264enc" && p["usable"] == true));

    pin(&b, "openh264enc");
    let json = b.json(&["encoders", "--json"]);
    assert_eq!(json["chosen"], "openh264enc", "{json}");
    assert_eq!(json["probes"].as_array().unwrap().len(), 1, "a pinned encoder is the only one tried");

    pin(&b, "mpph264enc");
    let out = b.cli(&["encoders"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("the pinned encoder mpph264enc does not work here"), "{}", stderr(&out));
}

/// Sets `[recording] video_encoder` in witness.toml (the section exists in the default file).
fn pin(b: &Box, encoder: &str) {
    let path = b.data().join("witness.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("video_encoder")).collect();
    let text = kept.join("\n").replace("[recording]", &format!("[recording]\nvideo_encoder = \"{encoder}\""));
    std::fs::write(path, text).unwrap();
}
