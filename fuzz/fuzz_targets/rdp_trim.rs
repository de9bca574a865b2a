//! The filter patches capabilities in place in PDUs a client wrote: whatever the bytes, trimming
//! must not panic, never change a length, and leave a PDU it cannot trim exactly as it was.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_rdp_core::filter::{trim_capabilities, trim_gfx_caps};

fuzz_target!(|data: &[u8]| {
    let mut confirm = data.to_vec();
    trim_capabilities(&mut confirm);
    assert_eq!(confirm.len(), data.len());
    let mut caps = data.to_vec();
    match trim_gfx_caps(&mut caps) {
        None => assert_eq!(caps, data, "changed but not trimmed"),
        Some(_) => {
            assert_eq!(caps.len(), data.len());
            // Trimmed once, a Caps Advertise trims to itself.
            let mut again = caps.clone();
            assert!(trim_gfx_caps(&mut again).is_some());
            assert_eq!(again, caps);
        }
    }
});
