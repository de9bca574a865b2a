//! The video's input picture, kept as I420 and converted from the screen only where it changed:
//! a keystroke converts a band of rows, not a 1080p frame, and a repeated frame converts nothing.

use crate::VideoError;
use yuv::{BufferStoreMut, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix};

/// The matrix and range the conversion uses; the caps say the same (`colorimetry=bt601`) so
/// players decode the colours back as they were.
pub(crate) const COLORIMETRY: &str = "bt601";

/// Rows of the screen that changed: `[top, top + height)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    pub top: u32,
    pub height: u32,
}

/// A picture drawn over the screen where it is (the session's pointer): RGBA, not premultiplied,
/// `width × height` pixels, its top left corner at `x`, `y` (it may reach off the screen).
#[derive(Debug, Clone, Copy)]
pub struct Pointer<'a> {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub rgba: &'a [u8],
}

/// An I420 picture (Y plane, then U, then V; even width and height).
pub(crate) struct Canvas {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl Canvas {
    /// A black picture of an even size.
    pub(crate) fn new(width: u32, height: u32) -> Self {
        let (w, h) = (width as usize, height as usize);
        let mut data = vec![16u8; w * h + w * h / 2];
        data[w * h..].fill(128);
        Self { width, height, data }
    }

    pub(crate) fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Converts `rows` of a BGRx screen (`stride` bytes per row, at least this canvas's size;
    /// `None`: all rows) into the picture, with `pointer` drawn over them where it lies. Rows are
    /// widened to even bounds (chroma is shared by row pairs). The caller names the rows a
    /// pointer left or entered as changed.
    pub(crate) fn update(
        &mut self,
        bgrx: &[u8],
        stride: usize,
        rows: Option<Rows>,
        pointer: Option<Pointer<'_>>,
    ) -> Result<(), VideoError> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (top, bottom) = match rows {
            Some(r) => ((r.top as usize) & !1, ((r.top + r.height) as usize).div_ceil(2) * 2),
            None => (0, h),
        };
        let bottom = bottom.min(h);
        if top >= bottom {
            return Ok(());
        }
        if stride < w * 4 || bgrx.len() < stride * (bottom - 1) + w * 4 {
            return Err(VideoError::Frame(format!("{} bytes with stride {stride} for {w}x{h}", bgrx.len())));
        }
        self.convert(&bgrx[top * stride..], stride, top, bottom)?;
        let Some(p) = pointer.filter(|p| p.rgba.len() == p.width as usize * p.height as usize * 4) else {
            return Ok(());
        };
        // The pointer's rows inside the band, converted again from a copy it is drawn on.
        let p_top = (p.y.max(0) as usize & !1).max(top);
        let p_bottom = ((i64::from(p.y) + i64::from(p.height)).clamp(0, h as i64) as usize).div_ceil(2) * 2;
        let p_bottom = p_bottom.min(bottom);
        if p_top >= p_bottom {
            return Ok(());
        }
        let mut copy = vec![0u8; stride * (p_bottom - p_top)];
        let have = (bgrx.len() - p_top * stride).min(copy.len());
        copy[..have].copy_from_slice(&bgrx[p_top * stride..p_top * stride + have]);
        draw_over(&mut copy, stride, p_top, w, p);
        self.convert(&copy, stride, p_top, p_bottom)
    }

    /// Converts the rows `[top, bottom)` of the picture from `source`, which starts at row `top`.
    fn convert(&mut self, source: &[u8], stride: usize, top: usize, bottom: usize) -> Result<(), VideoError> {
        let (w, h) = (self.width as usize, self.height as usize);
        let band = bottom - top;
        let (y_plane, chroma) = self.data.split_at_mut(w * h);
        let (u_plane, v_plane) = chroma.split_at_mut(w * h / 4);
        // The converter wants `stride × rows` bytes of source: the last row of a screen may be
        // shorter than the stride, so convert it from a copy padded to the stride.
        let padded;
        let source = if source.len() < stride * band {
            let mut p = source.to_vec();
            p.resize(stride * band, 0);
            padded = p;
            &padded[..]
        } else {
            source
        };
        let mut image = YuvPlanarImageMut {
            y_plane: BufferStoreMut::Borrowed(&mut y_plane[top * w..bottom * w]),
            y_stride: w as u32,
            u_plane: BufferStoreMut::Borrowed(&mut u_plane[top / 2 * w / 2..bottom / 2 * w / 2]),
            u_stride: (w / 2) as u32,
            v_plane: BufferStoreMut::Borrowed(&mut v_plane[top / 2 * w / 2..bottom / 2 * w / 2]),
            v_stride: (w / 2) as u32,
            width: w as u32,
            height: band as u32,
        };
        yuv::bgra_to_yuv420(
            &mut image,
            source,
            stride as u32,
            YuvRange::Limited,
            YuvStandardMatrix::Bt601,
            YuvConversionMode::Balanced,
        )
        .map_err(|e| VideoError::Frame(format!("colour conversion: {e}")))
    }
}

/// Blends `p` into `rows` (BGRx, `stride` bytes a row, the first being screen row `top`).
fn draw_over(rows: &mut [u8], stride: usize, top: usize, width: usize, p: Pointer<'_>) {
    let count = rows.len() / stride;
    for py in 0..p.height as usize {
        let Some(row) = (i64::from(p.y) + py as i64).checked_sub(top as i64).filter(|r| (0..count as i64).contains(r))
        else {
            continue;
        };
        for px in 0..p.width as usize {
            let x = i64::from(p.x) + px as i64;
            if !(0..width as i64).contains(&x) {
                continue;
            }
            let [r, g, b, a] = p.rgba[(py * p.width as usize + px) * 4..][..4] else { continue };
            let at = row as usize * stride + x as usize * 4;
            let a = u16::from(a);
            for (dst, src) in rows[at..at + 3].iter_mut().zip([b, g, r]) {
                *dst = ((u16::from(*dst) * (255 - a) + u16::from(src) * a + 127) / 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(w: usize, h: usize, bgrx: [u8; 4]) -> Vec<u8> {
        bgrx.iter().copied().cycle().take(w * h * 4).collect()
    }

    fn y_at(c: &Canvas, x: usize, y: usize) -> u8 {
        c.bytes()[y * c.width as usize + x]
    }

    #[test]
    fn a_new_canvas_is_black() {
        let c = Canvas::new(32, 16);
        assert_eq!(y_at(&c, 0, 0), 16);
        assert_eq!(c.bytes().len(), 32 * 16 * 3 / 2);
        assert!(c.bytes()[32 * 16..].iter().all(|&v| v == 128));
    }

    #[test]
    fn colours_convert_with_bt601_limited_range() {
        let mut c = Canvas::new(32, 16);
        c.update(&screen(32, 16, [255, 255, 255, 0]), 32 * 4, None, None).unwrap();
        assert!((234..=236).contains(&y_at(&c, 5, 5)), "white: {}", y_at(&c, 5, 5));
        // Red (BGRx 0,0,255): Y 81, U 90, V 240 in BT.601 limited range.
        c.update(&screen(32, 16, [0, 0, 255, 0]), 32 * 4, None, None).unwrap();
        let (y, u, v) = (y_at(&c, 1, 1), c.bytes()[32 * 16], c.bytes()[32 * 16 + 8 * 16]);
        assert!(y.abs_diff(81) <= 2 && u.abs_diff(90) <= 2 && v.abs_diff(240) <= 2, "red: {y} {u} {v}");
    }

    #[test]
    fn only_the_changed_rows_are_converted() {
        let mut c = Canvas::new(32, 16);
        let white = screen(32, 16, [255, 255, 255, 0]);
        // Rows 5..7 widen to 4..8.
        c.update(&white, 32 * 4, Some(Rows { top: 5, height: 2 }), None).unwrap();
        for y in 0..16 {
            let expect_white = (4..8).contains(&y);
            assert_eq!(y_at(&c, 3, y) > 200, expect_white, "row {y}");
        }
    }

    #[test]
    fn a_wider_stride_and_a_short_last_row_are_read_right() {
        let (w, h, stride) = (32usize, 16usize, 40 * 4);
        // The screen buffer ends right after the last row's pixels (no padding after it).
        let mut bgrx = vec![0u8; stride * (h - 1) + w * 4];
        for y in 0..h {
            for x in 0..w {
                bgrx[y * stride + x * 4..y * stride + x * 4 + 4].copy_from_slice(&[255, 255, 255, 0]);
            }
        }
        let mut c = Canvas::new(w as u32, h as u32);
        c.update(&bgrx, stride, Some(Rows { top: 14, height: 2 }), None).unwrap();
        assert!(y_at(&c, 31, 15) > 200 && y_at(&c, 31, 13) < 20);
        let err = c.update(&bgrx[..100], stride, None, None).unwrap_err();
        assert!(err.to_string().contains("stride"), "{err}");
    }

    #[test]
    fn a_pointer_is_drawn_over_the_rows_it_lies_on_and_leaves_none_behind() {
        let mut c = Canvas::new(32, 16);
        let black = screen(32, 16, [0, 0, 0, 0]);
        // A 4x4 white pointer at half opacity, at (10, 5).
        let rgba = [255, 255, 255, 128].repeat(16);
        let p = Pointer { x: 10, y: 5, width: 4, height: 4, rgba: &rgba };
        c.update(&black, 32 * 4, None, Some(p)).unwrap();
        let grey = y_at(&c, 11, 6);
        assert!((115..=135).contains(&grey), "half white over black: {grey}");
        assert!(y_at(&c, 9, 6) < 20 && y_at(&c, 14, 6) < 20, "beside the pointer");
        // It moves off the screen: the rows it left are named and come back clean.
        let gone = Pointer { x: -10, y: -10, ..p };
        c.update(&black, 32 * 4, Some(Rows { top: 5, height: 4 }), Some(gone)).unwrap();
        assert!(y_at(&c, 11, 6) < 20);
        // Rows changed under part of it keep it drawn there.
        c.update(&black, 32 * 4, None, Some(p)).unwrap();
        c.update(&black, 32 * 4, Some(Rows { top: 8, height: 2 }), Some(p)).unwrap();
        assert!((115..=135).contains(&y_at(&c, 11, 8)));
    }
}

#[cfg(test)]
#[path = "canvas_red17p.rs"]
mod red17p;
