//! Board profiles: one TOML file per board (in `board/profiles/`, built into the binary), naming
//! GPIO lines, I2C buses and addresses, the watchdog device and the video encoder preference.
//! No pin number lives in code. Parsing refuses unknown keys, missing lines and a line or
//! address used twice, each with a message that names the file and the key.

use crate::BoardError;
use serde::Deserialize;
use std::collections::HashMap;

/// Profiles shipped with the firmware: (name, file text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("sim", include_str!("../../profiles/sim.toml")),
    ("x86-generic", include_str!("../../profiles/x86-generic.toml")),
    ("rpi-cm4", include_str!("../../profiles/rpi-cm4.toml")),
    ("rk3588", include_str!("../../profiles/rk3588.toml")),
    ("imx8mp", include_str!("../../profiles/imx8mp.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    description: String,
    #[serde(default)]
    sim: bool,
    #[serde(rename = "match", default)]
    matches: Matches,
    leds: Option<Leds>,
    button: Option<ButtonFile>,
    #[serde(default)]
    sensor: Vec<SensorFile>,
    watchdog: Option<WatchdogFile>,
    video: Video,
}

#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Matches {
    /// Any of these in `/proc/device-tree/compatible` selects the profile.
    #[serde(default)]
    pub device_tree: Vec<String>,
    /// Any of these as the DMI product name selects the profile.
    #[serde(default)]
    pub dmi_product: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Leds {
    /// GPIO chip (`gpiochip0`) and line names on it.
    pub chip: String,
    pub green: String,
    pub red: String,
    #[serde(default)]
    pub active_low: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ButtonFile {
    chip: String,
    line: String,
    #[serde(default)]
    active_low: bool,
    debounce_ms: Option<u64>,
    long_press_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ButtonLine {
    pub chip: String,
    pub line: String,
    pub active_low: bool,
    pub debounce_ms: u64,
    pub long_press_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SensorFile {
    name: String,
    kind: String,
    bus: String,
    address: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub name: String,
    pub kind: crate::drivers::TempKind,
    /// I2C bus device, e.g. `/dev/i2c-1`.
    pub bus: String,
    pub address: u8,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatchdogFile {
    pub device: String,
    pub timeout_s: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Video {
    /// GStreamer encoder elements in order of preference; the video pipeline probes them.
    pub encoders: Vec<String>,
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub sim: bool,
    pub matches: Matches,
    pub leds: Option<Leds>,
    pub button: Option<ButtonLine>,
    pub sensors: Vec<Sensor>,
    pub watchdog: Option<WatchdogFile>,
    pub encoders: Vec<String>,
}

impl Profile {
    /// Parses and validates a profile; `origin` names it in errors (file name or built-in name).
    pub fn parse(origin: &str, text: &str) -> Result<Self, BoardError> {
        let err = |detail: String| BoardError::Profile { name: origin.to_owned(), detail };
        let f: File = toml::from_str(text).map_err(|e| err(e.message().to_owned()))?;
        if f.name.is_empty() {
            return Err(err("name is empty".into()));
        }
        if !f.sim && f.leds.is_none() {
            return Err(err("missing [leds]: a hardware board needs its front-panel LEDs".into()));
        }
        // Every GPIO line may serve one purpose only.
        let mut lines: HashMap<(String, String), &str> = HashMap::new();
        let mut claim = |chip: &str, line: &str, key: &'static str| -> Result<(), BoardError> {
            if line.is_empty() {
                return Err(err(format!("{key} names no line")));
            }
            if let Some(prev) = lines.insert((chip.to_owned(), line.to_owned()), key) {
                return Err(err(format!("line {line} on {chip} is used twice ({prev} and {key})")));
            }
            Ok(())
        };
        if let Some(l) = &f.leds {
            claim(&l.chip, &l.green, "leds.green")?;
            claim(&l.chip, &l.red, "leds.red")?;
        }
        let button = match f.button {
            Some(b) => {
                claim(&b.chip, &b.line, "button.line")?;
                Some(ButtonLine {
                    chip: b.chip,
                    line: b.line,
                    active_low: b.active_low,
                    debounce_ms: b.debounce_ms.unwrap_or(30),
                    long_press_ms: b.long_press_ms.unwrap_or(10_000),
                })
            }
            None => None,
        };
        let mut addresses = HashMap::new();
        let mut sensors = Vec::new();
        for s in f.sensor {
            let kind = match s.kind.as_str() {
                "lm75" => crate::drivers::TempKind::Lm75,
                "tmp102" => crate::drivers::TempKind::Tmp102,
                other => return Err(err(format!("sensor {}: unknown kind {other:?} (known: lm75, tmp102)", s.name))),
            };
            if !(0x08..=0x77).contains(&s.address) {
                return Err(err(format!("sensor {}: address 0x{:02x} is outside 0x08..=0x77", s.name, s.address)));
            }
            if let Some(prev) = addresses.insert((s.bus.clone(), s.address), s.name.clone()) {
                return Err(err(format!(
                    "address 0x{:02x} on {} is used twice ({prev} and {})",
                    s.address, s.bus, s.name
                )));
            }
            sensors.push(Sensor { name: s.name, kind, bus: s.bus, address: s.address });
        }
        if let Some(w) = &f.watchdog
            && !(1..=600).contains(&w.timeout_s)
        {
            return Err(err(format!("watchdog.timeout_s {} is outside 1..=600", w.timeout_s)));
        }
        if f.video.encoders.is_empty() {
            return Err(err("video.encoders is empty: list at least a software encoder".into()));
        }
        Ok(Profile {
            name: f.name,
            description: f.description,
            sim: f.sim,
            matches: f.matches,
            leds: f.leds,
            button,
            sensors,
            watchdog: f.watchdog,
            encoders: f.video.encoders,
        })
    }

    pub fn builtin(name: &str) -> Option<Result<Self, BoardError>> {
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(n, text)| Self::parse(n, text))
    }
}

/// Picks a built-in profile from what the machine says about itself: its device tree
/// `compatible` strings, or its DMI product name. `None`: nothing matched (use `sim`).
pub fn detect(device_tree: &[String], dmi_product: Option<&str>) -> Option<&'static str> {
    BUILTIN.iter().find_map(|(name, text)| {
        let p = Profile::parse(name, text).ok()?;
        let dt = p.matches.device_tree.iter().any(|c| device_tree.contains(c));
        let dmi = dmi_product.is_some_and(|d| p.matches.dmi_product.iter().any(|m| m == d));
        (dt || dmi).then_some(*name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_is_valid() {
        for (name, text) in BUILTIN {
            let p = Profile::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&p.name, name, "file name and profile name agree");
            assert!(p.encoders.iter().any(|e| e == "x264enc" || e == "openh264enc"), "{name} falls back to software");
        }
        assert!(Profile::builtin("sim").unwrap().unwrap().sim);
    }

    #[test]
    fn detection_by_device_tree_and_dmi() {
        assert_eq!(detect(&["raspberrypi,4-compute-module".into(), "brcm,bcm2711".into()], None), Some("rpi-cm4"));
        assert_eq!(detect(&["rockchip,rk3588".into()], None), Some("rk3588"));
        assert_eq!(detect(&[], Some("no such board")), None);
    }

    fn check(text: &str, expect: &str) {
        let e = Profile::parse("test.toml", text).unwrap_err().to_string();
        assert!(e.contains(expect), "expected {expect:?} in {e:?}");
        assert!(e.starts_with("board profile test.toml: "), "{e}");
    }

    const BASE: &str = "name = \"t\"\ndescription = \"d\"\n[video]\nencoders = [\"x264enc\"]\n";

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        check(&format!("{BASE}colour = \"red\"\n"), "unknown field `colour`");
        check(BASE, "missing [leds]");
        check(&format!("{BASE}[leds]\nchip = \"gpiochip0\"\ngreen = \"GPIO17\"\n"), "missing field `red`");
        check(
            &format!(
                "{BASE}[leds]\nchip = \"gpiochip0\"\ngreen = \"GPIO17\"\nred = \"GPIO27\"\n[button]\nchip = \"gpiochip0\"\nline = \"GPIO17\"\n"
            ),
            "line GPIO17 on gpiochip0 is used twice (leds.green and button.line)",
        );
        let leds = "[leds]\nchip = \"c\"\ngreen = \"a\"\nred = \"b\"\n";
        check(
            &format!(
                "{BASE}{leds}[[sensor]]\nname = \"x\"\nkind = \"lm75\"\nbus = \"/dev/i2c-1\"\naddress = 72\n[[sensor]]\nname = \"y\"\nkind = \"tmp102\"\nbus = \"/dev/i2c-1\"\naddress = 72\n"
            ),
            "address 0x48 on /dev/i2c-1 is used twice (x and y)",
        );
        check(
            &format!("{BASE}{leds}[[sensor]]\nname = \"x\"\nkind = \"ds18b20\"\nbus = \"b\"\naddress = 72\n"),
            "unknown kind \"ds18b20\"",
        );
        check("name = \"t\"\ndescription = \"d\"\nsim = true\n[video]\nencoders = []\n", "video.encoders is empty");
    }
}
