//! Board profiles are files an integrator writes: any text must give a profile or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = witness_board::profile::Profile::parse("fuzz.toml", text);
    }
});
