//! Channel names come from the client (static) and the target (dynamic): read as servers read
//! them, a name is the ASCII bytes up to the first NUL, without case, and whether a grant opens
//! it cannot depend on case or on bytes after the NUL.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_rdp_core::channels::{channel_name, dynamic_allowed, static_allowed};
use witness_rdp_core::channels::{Redirection, Switches};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, name)) = data.split_first() else { return };
    let r = Redirection::from_grant(Switches {
        clipboard: mode & 1 == 1,
        drives: mode & 2 == 2,
        usb: mode & 4 == 4,
        camera: mode & 8 == 8,
        audio_input: mode & 16 == 16,
        audio: mode & 32 == 32,
    });
    let parsed = channel_name(name);
    if let Some(n) = &parsed {
        assert!(!n.is_empty() && n.is_ascii() && !n.contains('\0'));
        assert_eq!(*n, n.to_ascii_lowercase());
    }
    let upper: Vec<u8> = name.to_ascii_uppercase();
    assert_eq!(static_allowed(r, name), static_allowed(r, &upper));
    assert_eq!(dynamic_allowed(r, name), dynamic_allowed(r, &upper));
    // Bytes after the first NUL change nothing.
    if let Some(nul) = name.iter().position(|&b| b == 0) {
        let mut tail = name[..=nul].to_vec();
        tail.extend(name[nul + 1..].iter().map(|b| b.wrapping_add(1)));
        assert_eq!(channel_name(&tail), parsed);
        assert_eq!(static_allowed(r, &tail), static_allowed(r, name));
    }
    if parsed.is_none() {
        assert!(!static_allowed(r, name) && !dynamic_allowed(r, name), "an unreadable name opened");
    }
});
