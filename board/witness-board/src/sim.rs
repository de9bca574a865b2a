//! The simulated board: the default for development and CI. Its LEDs, button, watchdog and
//! sensor live in memory; the daemon publishes what the panel shows (`witness panel`).

use crate::{BoardError, Button, Indicator, Led, TempSensor, Watchdog};
use std::sync::{Arc, Mutex};

/// The sim board's observable state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimState {
    pub green: bool,
    pub red: bool,
    pub button_pressed: bool,
    pub watchdog_pets: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Sim(pub Arc<Mutex<SimState>>);

impl Sim {
    fn with<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> SimState {
        self.with(|s| s.clone())
    }

    /// A board with every part simulated.
    pub fn board(&self, profile: crate::profile::Profile) -> crate::Board {
        crate::Board {
            profile,
            indicator: Box::new(self.clone()),
            button: Some(Box::new(self.clone())),
            watchdog: Some(Box::new(self.clone())),
            sensors: vec![("board".into(), Box::new(self.clone()))],
        }
    }
}

impl Indicator for Sim {
    fn set(&mut self, led: Led, on: bool) -> Result<(), BoardError> {
        self.with(|s| match led {
            Led::Green => s.green = on,
            Led::Red => s.red = on,
        });
        Ok(())
    }
}

impl Button for Sim {
    fn is_pressed(&mut self) -> Result<bool, BoardError> {
        Ok(self.with(|s| s.button_pressed))
    }
}

impl Watchdog for Sim {
    fn pet(&mut self) -> Result<(), BoardError> {
        self.with(|s| s.watchdog_pets += 1);
        Ok(())
    }
}

impl TempSensor for Sim {
    fn celsius(&mut self) -> Result<f32, BoardError> {
        Ok(42.0)
    }
}
