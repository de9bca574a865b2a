//! Red team `h-red17p`'s attack on the pointer drawn over the video (issue 17, red team
//! `h-red17m`'s hole 8 as fixed): the test passes while the hole is open.

use super::*;

/// Hole 9 of `h-red17p` (closed: the decoder caps a pointer's alpha at 64, a quarter; see
/// `filter_red17p.rs` in witness-rdp-core): a pointer drawn at alpha 128 that is the negative of
/// the screen beneath it converted to flat grey; at 64 the text keeps half its contrast. A program of the session knows the screen and the mouse and sets such a cursor; the
/// insider's client works on the real screen (it does not draw the target's pointer), the video
/// shows a grey square where it works. Capacity: the pointer's area (96x96, 384x384 with large
/// pointers), anywhere the mouse is, for as long as the program keeps up. Fix direction: no
/// picture of the target's blended over the recorded screen (a fixed marker instead), or an
/// alpha cap far below 128.
#[test]
fn red17p_a_negative_pointer_at_the_capped_opacity_leaves_the_screen_beneath_readable() {
    let (w, h) = (64usize, 32usize);
    // Black text on white: a pattern of both.
    let ink = |x: usize, y: usize| (x * 7 + y * 13 + x * y) % 5 < 2;
    let mut screen = vec![0u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let v = if ink(x, y) { 0 } else { 255 };
            screen[(y * w + x) * 4..][..4].copy_from_slice(&[v, v, v, 0]);
        }
    }
    // The pointer: the negative of the screen, at the recorder's highest alpha, over all of it.
    let mut rgba = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let v = if ink(x, y) { 255 } else { 0 };
            rgba.extend([v, v, v, 64]);
        }
    }
    let pointer = Pointer { x: 0, y: 0, width: w as u32, height: h as u32, rgba: &rgba };
    let luma = |pointer: Option<Pointer<'_>>| {
        let mut c = Canvas::new(w as u32, h as u32);
        c.update(&screen, w * 4, None, pointer).unwrap();
        let y_plane = c.bytes()[..w * h].to_vec();
        (*y_plane.iter().min().unwrap(), *y_plane.iter().max().unwrap())
    };
    // Control: without the pointer the video shows black and white.
    let (dark, light) = luma(None);
    assert!(dark < 20 && light > 230, "the text: {dark}..{light}");
    // With it, the text still shows, at half its contrast or more.
    let (low, high) = luma(Some(pointer));
    assert!(high - low >= (light - dark) / 2, "the text faded to {low}..{high}");
}
