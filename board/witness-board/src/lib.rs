//! Board support for the Witness box: what the daemon uses to show its state on the front panel,
//! hear the button, feed the hardware watchdog and read sensors. The daemon speaks only to the
//! small traits here; drivers are generic over embedded-hal 1.0 and own their bus or pins from
//! `new()`; which pins and buses a board has is data (a profile file), never code.

pub mod button;
pub mod drivers;
pub mod panel;
pub mod profile;
pub mod sim;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum BoardError {
    #[error("gpio {line}: {detail}")]
    Gpio { line: String, detail: String },
    #[error("i2c device 0x{address:02x}: {detail}")]
    I2c { address: u8, detail: String },
    #[error("watchdog {device}: {detail}")]
    Watchdog { device: String, detail: String },
    #[error("board profile {name}: {detail}")]
    Profile { name: String, detail: String },
}

/// The two front-panel LEDs every profile has (a bi-colour LED counts as two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Led {
    Green,
    Red,
}

/// Front-panel LEDs.
pub trait Indicator: Send {
    fn set(&mut self, led: Led, on: bool) -> Result<(), BoardError>;
}

/// The front-panel button, read raw (the daemon debounces with [`button::ButtonTracker`]).
pub trait Button: Send {
    fn is_pressed(&mut self) -> Result<bool, BoardError>;
}

/// The hardware watchdog: reset the box unless petted in time.
pub trait Watchdog: Send {
    fn pet(&mut self) -> Result<(), BoardError>;
}

/// A temperature sensor.
pub trait TempSensor: Send {
    fn celsius(&mut self) -> Result<f32, BoardError>;
}

/// A board assembled from a profile.
pub struct Board {
    pub profile: profile::Profile,
    pub indicator: Box<dyn Indicator>,
    pub button: Option<Box<dyn Button>>,
    pub watchdog: Option<Box<dyn Watchdog>>,
    pub sensors: Vec<(String, Box<dyn TempSensor>)>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Board({})", self.profile.name)
    }
}
