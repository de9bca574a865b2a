//! Drivers generic over embedded-hal 1.0. Each takes its pins or bus at `new()` and owns them;
//! a bus or pin error becomes a [`BoardError`] naming the device, never a panic.

use crate::{BoardError, Button, Indicator, Led, TempSensor};
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::i2c::{Error as _, I2c};

/// Two LEDs on GPIO lines.
pub struct GpioLeds<P> {
    green: P,
    red: P,
    active_low: bool,
    names: [String; 2],
}

impl<P: OutputPin> GpioLeds<P> {
    pub fn new(green: P, red: P, active_low: bool, names: [String; 2]) -> Self {
        Self { green, red, active_low, names }
    }
}

impl<P: OutputPin + Send> Indicator for GpioLeds<P> {
    fn set(&mut self, led: Led, on: bool) -> Result<(), BoardError> {
        let (pin, name) = match led {
            Led::Green => (&mut self.green, &self.names[0]),
            Led::Red => (&mut self.red, &self.names[1]),
        };
        let high = on != self.active_low;
        let r = if high { pin.set_high() } else { pin.set_low() };
        r.map_err(|e| BoardError::Gpio { line: name.clone(), detail: format!("{e:?}") })
    }
}

/// A push button on a GPIO line.
pub struct GpioButton<P> {
    pin: P,
    active_low: bool,
    name: String,
}

impl<P: InputPin> GpioButton<P> {
    pub fn new(pin: P, active_low: bool, name: String) -> Self {
        Self { pin, active_low, name }
    }
}

impl<P: InputPin + Send> Button for GpioButton<P> {
    fn is_pressed(&mut self) -> Result<bool, BoardError> {
        let high =
            self.pin.is_high().map_err(|e| BoardError::Gpio { line: self.name.clone(), detail: format!("{e:?}") })?;
        Ok(high != self.active_low)
    }
}

/// Which temperature sensor, for its register layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempKind {
    /// LM75: 9-bit, 0.5 °C per step, left-aligned in the 16-bit temperature register.
    Lm75,
    /// TMP102: 12-bit, 0.0625 °C per step, left-aligned.
    Tmp102,
}

/// An I2C temperature sensor (register 0x00 holds the temperature, big-endian).
pub struct I2cTemp<I> {
    i2c: I,
    address: u8,
    kind: TempKind,
}

impl<I: I2c> I2cTemp<I> {
    pub fn new(i2c: I, address: u8, kind: TempKind) -> Self {
        Self { i2c, address, kind }
    }

    /// Converts the raw register to °C.
    pub fn convert(kind: TempKind, raw: [u8; 2]) -> f32 {
        let v = i16::from_be_bytes(raw);
        match kind {
            TempKind::Lm75 => f32::from(v >> 7) * 0.5,
            TempKind::Tmp102 => f32::from(v >> 4) * 0.0625,
        }
    }
}

impl<I: I2c + Send> TempSensor for I2cTemp<I> {
    fn celsius(&mut self) -> Result<f32, BoardError> {
        let mut raw = [0u8; 2];
        self.i2c
            .write_read(self.address, &[0x00], &mut raw)
            .map_err(|e| BoardError::I2c { address: self.address, detail: format!("{:?}", e.kind()) })?;
        Ok(Self::convert(self.kind, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panel::{PanelState, levels, pattern};
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
    use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTx};

    #[test]
    fn led_pattern_drives_the_exact_pin_levels() {
        // Recording: green 900 ms on / 100 ms off; sampled at 0, 950, 1000 ms (active low).
        let green = PinMock::new(&[PinTx::set(State::Low), PinTx::set(State::High), PinTx::set(State::Low)]);
        let red = PinMock::new(&[PinTx::set(State::High), PinTx::set(State::High), PinTx::set(State::High)]);
        let mut leds = GpioLeds::new(green, red, true, ["GREEN".into(), "RED".into()]);
        for t in [0, 950, 1000] {
            let (g, r) = levels(pattern(PanelState::Recording), t);
            leds.set(Led::Green, g).unwrap();
            leds.set(Led::Red, r).unwrap();
        }
        leds.green.done();
        leds.red.done();
    }

    #[test]
    fn button_reads_active_low() {
        let pin = PinMock::new(&[PinTx::get(State::Low), PinTx::get(State::High)]);
        let mut b = GpioButton::new(pin, true, "BTN".into());
        assert!(b.is_pressed().unwrap());
        assert!(!b.is_pressed().unwrap());
        b.pin.done();
    }

    #[test]
    fn sensors_read_register_zero_and_convert() {
        let i2c = I2cMock::new(&[I2cTx::write_read(0x48, vec![0x00], vec![0x19, 0x80])]);
        let mut lm75 = I2cTemp::new(i2c, 0x48, TempKind::Lm75);
        assert_eq!(lm75.celsius().unwrap(), 25.5);
        lm75.i2c.done();
        let i2c = I2cMock::new(&[I2cTx::write_read(0x49, vec![0x00], vec![0xE7, 0x00])]);
        let mut tmp = I2cTemp::new(i2c, 0x49, TempKind::Tmp102);
        assert_eq!(tmp.celsius().unwrap(), -25.0);
        tmp.i2c.done();
    }

    #[test]
    fn a_nack_is_a_clear_error_and_a_fault_not_a_panic() {
        let i2c = I2cMock::new(&[I2cTx::write_read(0x48, vec![0x00], vec![0, 0])
            .with_error(ErrorKind::NoAcknowledge(embedded_hal::i2c::NoAcknowledgeSource::Address))]);
        let mut lm75 = I2cTemp::new(i2c, 0x48, TempKind::Lm75);
        let err = lm75.celsius().unwrap_err();
        assert_eq!(err.to_string(), "i2c device 0x48: NoAcknowledge(Address)");
        lm75.i2c.done();
        let status = crate::panel::BoxStatus { fault: true, ..Default::default() };
        assert_eq!(crate::panel::panel_state(&status), PanelState::Fault);
    }
}
