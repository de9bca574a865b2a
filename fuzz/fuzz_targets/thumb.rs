//! A timeline thumbnail of an arbitrary grey picture of an arbitrary size: no panic; a PNG
//! exactly when the size matches the pixels, at most `thumb::WIDTH` wide, with the picture's
//! proportions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_video::thumb;

fuzz_target!(|data: &[u8]| {
    let Some((head, gray)) = data.split_at_checked(4) else { return };
    let (w, h) = (u32::from(u16::from_le_bytes([head[0], head[1]])), u32::from(u16::from_le_bytes([head[2], head[3]])));
    let png = thumb::png(w, h, gray);
    if w == 0 || h == 0 || gray.len() != (w as usize) * (h as usize) {
        assert!(png.is_none());
        return;
    }
    let png = png.expect("a thumbnail of every picture whose size matches");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let tw = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let th = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(tw, thumb::WIDTH.min(w));
    assert!(th >= 1 && u64::from(th) == (u64::from(h) * u64::from(tw)).div_ceil(u64::from(w)).max(1));
});
