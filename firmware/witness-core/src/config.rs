//! `witness.toml`: the file's exact shape (a DTO that refuses unknown keys) and the validated
//! [`Config`] the daemon runs on. Defaults are the appliance's embedded defaults.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("witness.toml: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("witness.toml: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The file as written. Every field is optional so an empty file means "embedded defaults".
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub box_id: Option<String>,
    #[serde(default)]
    pub ssh: SshSection,
    #[serde(default)]
    pub web: WebSection,
    #[serde(default)]
    pub recording: RecordingSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub board: BoardSection,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    /// A built-in profile name (`sim`, `rpi-cm4`, …) or a profile file's path; unset: detect
    /// from the device tree / DMI, else `sim`.
    pub profile: Option<String>,
}

/// How recordings leave the box (the destination itself, with its secrets, is `store.toml`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Uploaded recordings are deleted locally after this many days.
    pub keep_local_days: Option<u64>,
    /// Above this disk use (percent), uploaded recordings are evicted oldest first; if none
    /// can be, new sessions are refused.
    pub high_watermark_percent: Option<u8>,
    /// Size of multipart parts / Azure blocks (at least 5).
    pub part_size_mb: Option<u64>,
    /// Upload bandwidth cap for slow site links, kilobytes per second (0: none).
    pub bandwidth_kbps: Option<u64>,
    /// Uploads run at once (1..=16).
    pub concurrency: Option<u8>,
    /// How often the daemon's retention sweep runs, in seconds (1..=86400; default an hour).
    pub retention_sweep_seconds: Option<u64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    pub listen: Option<String>,
    /// Environment variables a client may pass on to the target (`*` at the end matches a prefix).
    pub env_allow: Option<Vec<String>>,
    pub agent_forwarding: Option<bool>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSection {
    /// Also record what users type (`i` events). Off by default: input holds passwords.
    pub record_input: Option<bool>,
    /// Also record what RDP users type (a key track beside the video). Off by default: keys
    /// include passwords typed into the target.
    pub rdp_keystrokes: Option<bool>,
    pub fsync_interval_ms: Option<u64>,
    /// New sessions are refused when the recordings' file system has less free space than this.
    pub min_free_mb: Option<u64>,
    /// Pins the H.264 encoder (a GStreamer element name, e.g. "v4l2h264enc"); unset: probe.
    pub video_encoder: Option<String>,
    /// Tesseract languages on-screen text is read in (`eng`, `eng+deu`: each needs its Debian
    /// `tesseract-ocr-LANG` package).
    pub ocr_languages: Option<String>,
    /// Read the text on RDP screens (OCR) after each session; on by default.
    pub screen_text: Option<bool>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub box_id: String,
    pub ssh_listen: SocketAddr,
    pub web_listen: SocketAddr,
    pub env_allow: Vec<String>,
    pub agent_forwarding: bool,
    pub record_input: bool,
    pub rdp_keystrokes: bool,
    pub fsync_interval: Duration,
    pub min_free_bytes: u64,
    pub keep_local_days: u64,
    pub high_watermark_percent: u8,
    pub part_size: u64,
    pub bandwidth_bytes_per_sec: u64,
    pub upload_concurrency: u8,
    pub retention_sweep: Duration,
    pub board_profile: Option<String>,
    pub video_encoder: Option<String>,
    pub ocr_languages: String,
    pub screen_text: bool,
}

pub const DEFAULT_SSH_LISTEN: &str = "0.0.0.0:2222";
pub const DEFAULT_WEB_LISTEN: &str = "0.0.0.0:8443";

impl ConfigFile {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Applies defaults and checks every value.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let addr = |key: &'static str, v: Option<String>, default: &str| -> Result<SocketAddr, ConfigError> {
            let v = v.unwrap_or_else(|| default.to_owned());
            v.parse()
                .map_err(|_| ConfigError::Invalid { key, reason: format!("{v:?} is not an address like 0.0.0.0:2222") })
        };
        let ms = |key: &'static str, v: Option<u64>, default: u64, max: u64| -> Result<Duration, ConfigError> {
            let v = v.unwrap_or(default);
            if v == 0 || v > max {
                return Err(ConfigError::Invalid { key, reason: format!("{v} is outside 1..={max}") });
            }
            Ok(Duration::from_millis(v))
        };
        let fsync_interval = ms("recording.fsync_interval_ms", self.recording.fsync_interval_ms, 1000, 60_000)?;
        let watermark = self.store.high_watermark_percent.unwrap_or(90);
        if !(1..=99).contains(&watermark) {
            return Err(ConfigError::Invalid {
                key: "store.high_watermark_percent",
                reason: format!("{watermark} is outside 1..=99"),
            });
        }
        let part_mb = self.store.part_size_mb.unwrap_or(16);
        if !(5..=4096).contains(&part_mb) {
            return Err(ConfigError::Invalid {
                key: "store.part_size_mb",
                reason: format!("{part_mb} is outside 5..=4096"),
            });
        }
        let ocr_languages = self.recording.ocr_languages.unwrap_or_else(|| "eng".to_owned());
        // Handed to Tesseract as one argument: language names joined by `+`, nothing else.
        if ocr_languages.split('+').any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
            return Err(ConfigError::Invalid {
                key: "recording.ocr_languages",
                reason: format!("{ocr_languages:?} is not Tesseract language names joined by + (like \"eng+deu\")"),
            });
        }
        let box_id = self.box_id.unwrap_or_else(|| "witness".to_owned());
        crate::names::validate_name(&box_id)
            .map_err(|e| ConfigError::Invalid { key: "box_id", reason: e.to_string() })?;
        Ok(Config {
            box_id,
            ssh_listen: addr("ssh.listen", self.ssh.listen, DEFAULT_SSH_LISTEN)?,
            web_listen: addr("web.listen", self.web.listen, DEFAULT_WEB_LISTEN)?,
            env_allow: self.ssh.env_allow.unwrap_or_else(|| vec!["LANG".into(), "LC_*".into(), "TZ".into()]),
            agent_forwarding: self.ssh.agent_forwarding.unwrap_or(false),
            record_input: self.recording.record_input.unwrap_or(false),
            rdp_keystrokes: self.recording.rdp_keystrokes.unwrap_or(false),
            fsync_interval,
            min_free_bytes: self.recording.min_free_mb.unwrap_or(256) * 1024 * 1024,
            keep_local_days: self.store.keep_local_days.unwrap_or(30),
            high_watermark_percent: watermark,
            part_size: part_mb * 1024 * 1024,
            bandwidth_bytes_per_sec: self.store.bandwidth_kbps.unwrap_or(0) * 1000,
            upload_concurrency: match self.store.concurrency.unwrap_or(2) {
                n @ 1..=16 => n,
                n => {
                    return Err(ConfigError::Invalid {
                        key: "store.concurrency",
                        reason: format!("{n} is outside 1..=16"),
                    });
                }
            },
            retention_sweep: match self.store.retention_sweep_seconds.unwrap_or(3600) {
                s @ 1..=86_400 => Duration::from_secs(s),
                s => {
                    return Err(ConfigError::Invalid {
                        key: "store.retention_sweep_seconds",
                        reason: format!("{s} is outside 1..=86400"),
                    });
                }
            },
            board_profile: self.board.profile,
            video_encoder: self.recording.video_encoder.filter(|e| !e.is_empty()),
            ocr_languages,
            screen_text: self.recording.screen_text.unwrap_or(true),
        })
    }
}

impl Config {
    /// Whether the client may pass environment variable `name` to the target.
    pub fn env_allowed(&self, name: &str) -> bool {
        env_allowed(&self.env_allow, name)
    }
}

/// Matches `name` against an allow-list whose entries are names or prefixes ending in `*`.
pub fn env_allowed(allow: &[String], name: &str) -> bool {
    allow.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_embedded_defaults() {
        let c = ConfigFile::parse("").unwrap().validate().unwrap();
        assert_eq!(c.ssh_listen.to_string(), DEFAULT_SSH_LISTEN);
        assert!(!c.record_input && !c.rdp_keystrokes && !c.agent_forwarding);
        assert_eq!(c.ocr_languages, "eng");
        assert!(c.screen_text);
        for bad in ["", "eng+", "-l", "eng deu", "../eng"] {
            let text = format!("[recording]\nocr_languages = {bad:?}\n");
            assert!(ConfigFile::parse(&text).unwrap().validate().is_err(), "{bad:?} accepted");
        }
        let text = "[recording]\nocr_languages = \"eng+deu\"\nrdp_keystrokes = true\n";
        let c = ConfigFile::parse(text).unwrap().validate().unwrap();
        assert_eq!((c.ocr_languages.as_str(), c.rdp_keystrokes), ("eng+deu", true));
        assert!(c.env_allowed("LC_ALL") && c.env_allowed("LANG") && !c.env_allowed("LD_PRELOAD"));
    }

    #[test]
    fn bad_files_say_where() {
        let e = ConfigFile::parse("[ssh]\nlisten = 5\n").unwrap_err().to_string();
        assert!(e.starts_with("witness.toml:"), "{e}");
        assert!(ConfigFile::parse("[ssh]\nlisen = \"x\"\n").unwrap_err().to_string().contains("unknown field"));
        let e = ConfigFile::parse("[ssh]\nlisten = \"nowhere\"\n").unwrap().validate().unwrap_err().to_string();
        assert_eq!(e, "witness.toml: ssh.listen: \"nowhere\" is not an address like 0.0.0.0:2222");
        let e = ConfigFile::parse("[recording]\nfsync_interval_ms = 0\n").unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("recording.fsync_interval_ms"));
    }
}
