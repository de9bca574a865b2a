//! Linux back-ends for a board profile: GPIO lines looked up by name through the GPIO character
//! device (v2 uAPI), I2C sensors through i2c-dev, and the kernel watchdog device. Assembles a
//! [`Board`] from a [`Profile`]; a part that cannot be opened is an error naming it.

use gpiocdev_embedded_hal::{InputPin, OutputPin};
use std::io::Write;
use witness_board::drivers::{GpioButton, GpioLeds, I2cTemp};
use witness_board::profile::Profile;
use witness_board::{Board, BoardError, Watchdog};

/// `/dev/watchdog*`: any write pets it; writing `V` before closing disarms it (magic close), so
/// a clean shutdown does not reset the box, while a hung daemon does.
pub struct DevWatchdog {
    file: std::fs::File,
    device: String,
}

impl DevWatchdog {
    pub fn open(device: &str) -> Result<Self, BoardError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .map_err(|e| BoardError::Watchdog { device: device.to_owned(), detail: e.to_string() })?;
        Ok(Self { file, device: device.to_owned() })
    }
}

impl Watchdog for DevWatchdog {
    fn pet(&mut self) -> Result<(), BoardError> {
        self.file
            .write_all(b"\0")
            .map_err(|e| BoardError::Watchdog { device: self.device.clone(), detail: e.to_string() })
    }
}

impl Drop for DevWatchdog {
    fn drop(&mut self) {
        let _ = self.file.write_all(b"V");
    }
}

fn gpio_err(line: &str, e: impl std::fmt::Display) -> BoardError {
    BoardError::Gpio { line: line.to_owned(), detail: e.to_string() }
}

/// The device nodes the profile's parts use: the GPIO chips holding its LED and button lines
/// (found by name, as [`build`] opens them; the chip the profile names if a line is not found)
/// and its sensors' I2C buses, each once, sorted. The sandbox opens these and no other.
pub fn device_nodes(profile: &Profile) -> Vec<String> {
    if profile.sim {
        return vec![];
    }
    let chip_of = |line: &str, chip: &str| match gpiocdev::find_named_line(line) {
        Some(found) => found.chip.display().to_string(),
        None if chip.starts_with('/') => chip.to_owned(),
        None => format!("/dev/{chip}"),
    };
    let mut nodes = Vec::new();
    if let Some(leds) = &profile.leds {
        nodes.push(chip_of(&leds.green, &leds.chip));
        nodes.push(chip_of(&leds.red, &leds.chip));
    }
    if let Some(b) = &profile.button {
        nodes.push(chip_of(&b.line, &b.chip));
    }
    nodes.extend(profile.sensors.iter().map(|s| s.bus.clone()));
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Opens every part the profile names.
pub fn build(profile: Profile) -> Result<Board, BoardError> {
    let leds = profile
        .leds
        .clone()
        .ok_or_else(|| BoardError::Profile { name: profile.name.clone(), detail: "no [leds] to drive".into() })?;
    let off =
        if leds.active_low { embedded_hal::digital::PinState::High } else { embedded_hal::digital::PinState::Low };
    let green = OutputPin::from_name(&leds.green, off).map_err(|e| gpio_err(&leds.green, e))?;
    let red = OutputPin::from_name(&leds.red, off).map_err(|e| gpio_err(&leds.red, e))?;
    let indicator = Box::new(GpioLeds::new(green, red, leds.active_low, [leds.green.clone(), leds.red.clone()]));
    let button = match &profile.button {
        Some(b) => {
            let pin = InputPin::from_name(&b.line).map_err(|e| gpio_err(&b.line, e))?;
            Some(Box::new(GpioButton::new(pin, b.active_low, b.line.clone())) as Box<dyn witness_board::Button>)
        }
        None => None,
    };
    let watchdog = match &profile.watchdog {
        Some(w) => Some(Box::new(DevWatchdog::open(&w.device)?) as Box<dyn Watchdog>),
        None => None,
    };
    let mut sensors: Vec<(String, Box<dyn witness_board::TempSensor>)> = Vec::new();
    for s in &profile.sensors {
        let bus = linux_embedded_hal::I2cdev::new(&s.bus)
            .map_err(|e| BoardError::I2c { address: s.address, detail: format!("{}: {e}", s.bus) })?;
        sensors.push((s.name.clone(), Box::new(I2cTemp::new(bus, s.address, s.kind))));
    }
    Ok(Board { profile, indicator, button, watchdog, sensors })
}
