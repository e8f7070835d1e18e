//! Pixels to thumbnail pixels: target size, SIMD resampling, EXIF orientation, alpha flattening.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage, RgbaImage};

use crate::decode::Pixels;

/// The size of a thumbnail whose longest side is `size`, for a `width`×`height`
/// source; a source already within `size` keeps its size.
pub(crate) fn fit(width: u32, height: u32, size: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= size {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(size) + u64::from(longest) / 2) / u64::from(longest)).max(1) as u32
    };
    (scale(width), scale(height))
}

/// Resamples to exactly `width`×`height` with Lanczos3.
///
/// RGBA is premultiplied for the resampling (the resizer's `use_alpha`), so
/// transparent pixels' colour does not bleed into the edges.
pub(crate) fn resize(resizer: &mut Resizer, src: &Pixels, width: u32, height: u32) -> Pixels {
    if (src.width, src.height) == (width, height) {
        return src.clone();
    }
    let pixel_type = if src.alpha {
        PixelType::U8x4
    } else {
        PixelType::U8x3
    };
    let from = ImageRef::new(src.width, src.height, &src.data, pixel_type)
        .expect("decoders return exactly width * height * channels bytes");
    let mut to = Image::new(width, height, pixel_type);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    resizer
        .resize(&from, &mut to, &options)
        .expect("source and destination have the same pixel type");
    Pixels {
        width,
        height,
        alpha: src.alpha,
        data: to.into_vec(),
    }
}

/// Applied after resizing, where it touches the fewest pixels.
pub(crate) fn orient(pixels: Pixels, orientation: Orientation) -> Pixels {
    if orientation == Orientation::NoTransforms {
        return pixels;
    }
    let Pixels {
        width,
        height,
        alpha,
        data,
    } = pixels;
    let mut image = if alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(width, height, data).expect("size matches"))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, data).expect("size matches"))
    };
    image.apply_orientation(orientation);
    Pixels {
        width: image.width(),
        height: image.height(),
        alpha,
        data: image.into_bytes(),
    }
}

/// Composites RGBA onto white, for formats without alpha.
pub(crate) fn flatten_on_white(pixels: Pixels) -> Pixels {
    if !pixels.alpha {
        return pixels;
    }
    let data = pixels
        .data
        .chunks_exact(4)
        .flat_map(|px| {
            let a = u16::from(px[3]);
            let over_white = move |c: u8| ((u16::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
            [over_white(px[0]), over_white(px[1]), over_white(px[2])]
        })
        .collect();
    Pixels {
        alpha: false,
        data,
        ..pixels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit(4000, 3000, 256), (256, 192));
        assert_eq!(fit(3000, 4000, 256), (192, 256));
        assert_eq!(fit(100, 50, 256), (100, 50));
        assert_eq!(fit(10000, 1, 100), (100, 1));
    }

    #[test]
    fn flattening_puts_transparent_on_white_and_keeps_opaque() {
        let px = Pixels {
            width: 2,
            height: 1,
            alpha: true,
            data: vec![0, 0, 0, 0, 10, 20, 30, 255],
        };
        let flat = flatten_on_white(px);
        assert!(!flat.alpha);
        assert_eq!(flat.data, vec![255, 255, 255, 10, 20, 30]);
    }
}
