//! Thumbnails for `GET /v1/files/{c}/{id}/{filename}?thumb=WxH`: parse the `thumb` value,
//! tell which stored files can have one, and render it. Pure and synchronous: no I/O, no
//! caching (the caller keys its cache on [`ThumbSpec`]'s `Display`, which is canonical).
//!
//! # Semantics
//! - `WxH` (both > 0) crops to fill: the largest centred `W:H` rectangle of the image is cut
//!   out and scaled to exactly `W×H`, which is the same as "scale to cover, then centre-crop".
//! - `Wx0` / `0xH` keep the aspect ratio: the result is `W` wide (or `H` tall) and the other
//!   side follows the image. That other side is not capped at 2000: a 20000×1000 panorama at
//!   `0x500` is 10000×500, as "fit to that height" says.
//! - **No upscaling**: the thumbnail is never wider or taller than the image. For `WxH` on a
//!   smaller image the `W:H` crop is kept, at the largest size the image holds (a 100×50 image
//!   at `80x80` gives its centre 50×50, unscaled); for `Wx0` / `0xH` the image keeps its own
//!   size. So a client always gets the requested shape, only perhaps smaller.
//! - Sizes are those of the image as displayed: an EXIF orientation (phone photos) is applied,
//!   and `WxH` means width × height after it. The output carries no EXIF (no GPS leaks through
//!   a thumbnail); an ICC profile is kept where the output format can hold one.
//! - Output is in the original's format. Animated GIF and WebP: the first frame, as a still
//!   image. WebP is written lossless (`image`'s WebP encoder has no lossy mode), so a WebP
//!   thumbnail of a lossy photo is bigger than a lossy one would be. JPEG: quality 80.
//!
//! # Decompression bombs
//! A few hundred bytes can declare a 60000×60000 image (14 GB of RGBA). [`render`] reads the
//! header first and refuses anything over [`MAX_SIDE`] a side, [`MAX_PIXELS`] in all or
//! [`MAX_DECODED_BYTES`] of decoded pixels, before the pixel buffer exists; the same bounds go
//! to the decoder as [`image::Limits`] so its own buffers (PNG's, GIF's off-screen frames) are
//! capped too. Peak memory of one render is about the decoded image (≤ 256 MiB) plus the
//! thumbnail (small, except `Wx0`/`0xH` on a panorama): the caller should bound how many run
//! at once.
//!
//! Resizing uses [`image::imageops::thumbnail`] (area averaging): it allocates only the output,
//! where a filtered resize would hold a float copy of `source width × output height` (640 MB
//! for a 20000-wide image at `0x2000`), and it is the right filter for shrinking.

use std::fmt;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader, imageops};

/// Largest `W` or `H` a `thumb` spec may ask for (API.md: "at most 2000×2000").
pub const MAX_THUMB_SIDE: u32 = 2000;
/// Largest width or height of an image we decode. Larger sides are rare outside panoramas, and
/// a 1×100000 strip is a bomb shape that the pixel count alone would let through.
pub const MAX_SIDE: u32 = 20_000;
/// Largest image we decode, in pixels (50 megapixels: above every phone camera's default).
pub const MAX_PIXELS: u64 = 50_000_000;
/// Largest decoded pixel buffer, in bytes; also the decoder's allocation cap. A 50 MP 8-bit
/// RGBA image (200 MB) fits; a 16-bit RGBA PNG fits up to about 33 MP.
pub const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;
/// JPEG output quality: the usual web trade-off of size against visible artefacts.
const JPEG_QUALITY: u8 = 80;
/// GIF palette quantisation speed (1 = best, 30 = fastest). 1 takes seconds on a 2000×2000
/// frame; 10 is the `gif` crate's own suggestion for a good balance.
const GIF_SPEED: i32 = 10;

/// Why a thumbnail cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThumbError {
    /// The `thumb` value is malformed or over the limit: the client's fault (400).
    #[error("invalid thumb spec: {0}")]
    BadSpec(String),
    /// The image is larger than this server decodes (a decompression bomb or a huge photo).
    #[error("image too large for a thumbnail: {0}")]
    TooLarge(String),
    /// The bytes are not a valid image of the stated format (corrupt, truncated, unsupported
    /// variant such as 12-bit JPEG).
    #[error("cannot decode image: {0}")]
    Undecodable(String),
    /// Encoding the thumbnail failed: not the client's fault (500). Not expected to happen.
    #[error("cannot encode thumbnail: {0}")]
    Encode(String),
}

/// A parsed `?thumb=` value: `WxH` crops to fill, a 0 side keeps the aspect ratio.
///
/// The fields are public for the caller's convenience; [`render`] re-checks them, so a spec
/// built by hand cannot bypass the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThumbSpec {
    /// Target width; 0 = follow the height, keeping the ratio.
    pub width: u32,
    /// Target height; 0 = follow the width, keeping the ratio.
    pub height: u32,
}

impl ThumbSpec {
    /// The same checks as [`parse_spec`], for a spec built from its fields.
    pub fn validate(&self) -> Result<(), ThumbError> {
        if self.width == 0 && self.height == 0 {
            return Err(ThumbError::BadSpec(
                "0x0: give at least one side".to_string(),
            ));
        }
        if self.width > MAX_THUMB_SIDE || self.height > MAX_THUMB_SIDE {
            return Err(ThumbError::BadSpec(format!(
                "{self}: at most {MAX_THUMB_SIDE}x{MAX_THUMB_SIDE}"
            )));
        }
        Ok(())
    }
}

/// Canonical `WxH`: the form [`parse_spec`] accepts, usable as a cache key.
impl fmt::Display for ThumbSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Parses `"200x200"`, `"300x0"`, `"0x120"`.
///
/// Strict on purpose, so that one thumbnail has one spelling (and one cache entry): ASCII
/// digits only (no sign, no spaces, no `X`), no leading zeros, exactly one `x`, each side
/// ≤ [`MAX_THUMB_SIDE`], not both 0. Anything else is [`ThumbError::BadSpec`].
pub fn parse_spec(s: &str) -> Result<ThumbSpec, ThumbError> {
    let bad = |why: &str| ThumbError::BadSpec(format!("{s:?}: {why}"));
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| bad("expected WxH, e.g. 200x200, 300x0 or 0x120"))?;
    let side = |part: &str| -> Result<u32, ThumbError> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("each side must be a whole number"));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(bad("no leading zeros"));
        }
        // At most 4 digits fit under the limit; longer is over it (and may overflow u32).
        if part.len() > 4 {
            return Err(bad("at most 2000x2000"));
        }
        part.parse::<u32>()
            .map_err(|_| bad("each side must be a whole number"))
    };
    let spec = ThumbSpec {
        width: side(w)?,
        height: side(h)?,
    };
    spec.validate().map_err(|_| {
        if spec.width == 0 && spec.height == 0 {
            bad("give at least one side")
        } else {
            bad("at most 2000x2000")
        }
    })?;
    Ok(spec)
}

/// An image format that gets thumbnails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Png,
    Jpeg,
    WebP,
    Gif,
}

impl ImageFormat {
    /// The MIME type of the thumbnail (the same as the original's).
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::WebP => "image/webp",
            ImageFormat::Gif => "image/gif",
        }
    }

    fn to_image(self) -> image::ImageFormat {
        match self {
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::WebP => image::ImageFormat::WebP,
            ImageFormat::Gif => image::ImageFormat::Gif,
        }
    }
}

/// The thumbnail format for a stored file's MIME type; `None` = not an image we thumbnail
/// (the caller then ignores `thumb` and serves the file). Case-insensitive, parameters
/// (`; charset=...`) ignored; `image/jpg` is accepted as the common misspelling.
pub fn format_of(mime: &str) -> Option<ImageFormat> {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    match essence.to_ascii_lowercase().as_str() {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" | "image/jpg" => Some(ImageFormat::Jpeg),
        "image/webp" => Some(ImageFormat::WebP),
        "image/gif" => Some(ImageFormat::Gif),
        _ => None,
    }
}

/// Renders the thumbnail of `original` (bytes in `format`) per `spec`, in the same format.
///
/// CPU-bound (tens of milliseconds to a second for a large photo): call it from
/// `spawn_blocking` or a dedicated pool. The decoders are third-party code fed untrusted
/// bytes, so a panic inside them is caught and reported as [`ThumbError::Undecodable`]
/// rather than taking the caller down.
pub fn render(
    original: &[u8],
    format: ImageFormat,
    spec: &ThumbSpec,
) -> Result<Vec<u8>, ThumbError> {
    spec.validate()?;
    catch_unwind(AssertUnwindSafe(|| render_inner(original, format, *spec))).unwrap_or_else(|_| {
        Err(ThumbError::Undecodable(
            "the decoder failed on this input".to_string(),
        ))
    })
}

fn render_inner(
    original: &[u8],
    format: ImageFormat,
    spec: ThumbSpec,
) -> Result<Vec<u8>, ThumbError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(original), format.to_image());
    reader.limits(limits);
    // Parses the header only; the side limits are checked here, by the decoder.
    let mut decoder = reader.into_decoder().map_err(decode_error)?;

    let (width, height) = decoder.dimensions();
    check_size(width, height, decoder.total_bytes())?;
    // Metadata problems cost the thumbnail its orientation or colour profile, not its life.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;

    // Resize in the stored orientation and rotate the small result: rotating the full image
    // first would hold a second full-size copy. Centre-crop and fit commute with rotations and
    // flips, as long as the spec's sides are swapped for a quarter turn.
    let raw_spec = if swaps_axes(orientation) {
        ThumbSpec {
            width: spec.height,
            height: spec.width,
        }
    } else {
        spec
    };
    let plan = plan(width, height, raw_spec);
    let mut thumb = crop_and_scale(&image, &plan);
    drop(image);
    thumb.apply_orientation(orientation);
    encode(&thumb, format, icc)
}

fn check_size(width: u32, height: u32, decoded_bytes: u64) -> Result<(), ThumbError> {
    let pixels = u64::from(width) * u64::from(height);
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(ThumbError::TooLarge(format!(
            "{width}x{height}: at most {MAX_SIDE} pixels a side"
        )));
    }
    if pixels > MAX_PIXELS {
        return Err(ThumbError::TooLarge(format!(
            "{width}x{height}: at most {} megapixels",
            MAX_PIXELS / 1_000_000
        )));
    }
    if decoded_bytes > MAX_DECODED_BYTES {
        return Err(ThumbError::TooLarge(format!(
            "{width}x{height} decodes to {decoded_bytes} bytes, at most {MAX_DECODED_BYTES}"
        )));
    }
    if width == 0 || height == 0 {
        return Err(ThumbError::Undecodable(format!(
            "{width}x{height}: empty image"
        )));
    }
    Ok(())
}

/// A decoder's refusal on a limit is an oversize image; anything else is a bad one.
fn decode_error(e: image::ImageError) -> ThumbError {
    match e {
        image::ImageError::Limits(e) => ThumbError::TooLarge(e.to_string()),
        other => ThumbError::Undecodable(other.to_string()),
    }
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Which part of the image to take and how big to make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Crop rectangle in the source: x, y, width, height (all in range, sides ≥ 1).
    crop: (u32, u32, u32, u32),
    /// Output size: ≤ the crop on both sides (never an upscale), ≥ 1.
    out: (u32, u32),
}

/// `a * b / c`, rounded to nearest, clamped to `1..=max`. `c` > 0.
fn scale(a: u32, b: u32, c: u32, max: u32) -> u32 {
    let (a, b, c) = (u64::from(a), u64::from(b), u64::from(c));
    let v = (2 * a * b + c) / (2 * c);
    u32::try_from(v).unwrap_or(u32::MAX).clamp(1, max)
}

/// The crop and output size for a `width × height` source (both ≥ 1) and a valid spec.
fn plan(width: u32, height: u32, spec: ThumbSpec) -> Plan {
    let full = (0, 0, width, height);
    match (spec.width, spec.height) {
        (0, h) => {
            let out_h = h.min(height);
            Plan {
                crop: full,
                out: (scale(width, out_h, height, width), out_h),
            }
        }
        (w, 0) => {
            let out_w = w.min(width);
            Plan {
                crop: full,
                out: (out_w, scale(height, out_w, width, height)),
            }
        }
        (w, h) => {
            // The largest centred w:h rectangle in the source.
            let (crop_w, crop_h) =
                if u64::from(width) * u64::from(h) > u64::from(height) * u64::from(w) {
                    (scale(height, w, h, width), height)
                } else {
                    (width, scale(width, h, w, height))
                };
            let crop = ((width - crop_w) / 2, (height - crop_h) / 2, crop_w, crop_h);
            // Shrink to w×h when the crop is at least that big; otherwise keep the crop as it
            // is (same shape, no upscale). Rounding can leave one side a pixel short: min()
            // then keeps both sides within the crop.
            Plan {
                crop,
                out: (w.min(crop_w), h.min(crop_h)),
            }
        }
    }
}

fn crop_and_scale(image: &DynamicImage, plan: &Plan) -> DynamicImage {
    let (x, y, w, h) = plan.crop;
    let (out_w, out_h) = plan.out;
    // A macro, not a generic function: `thumbnail` needs image's `Enlargeable` bound, which
    // the crate does not export. The crop is a view: no copy of the full image is made.
    macro_rules! on_buffer {
        ($buffer:expr) => {{
            let view = imageops::crop_imm($buffer, x, y, w, h);
            if (w, h) == (out_w, out_h) {
                DynamicImage::from(view.to_image())
            } else {
                DynamicImage::from(imageops::thumbnail(&*view, out_w, out_h))
            }
        }};
    }
    match image {
        DynamicImage::ImageLuma8(b) => on_buffer!(b),
        DynamicImage::ImageLumaA8(b) => on_buffer!(b),
        DynamicImage::ImageRgb8(b) => on_buffer!(b),
        DynamicImage::ImageRgba8(b) => on_buffer!(b),
        DynamicImage::ImageLuma16(b) => on_buffer!(b),
        DynamicImage::ImageLumaA16(b) => on_buffer!(b),
        DynamicImage::ImageRgb16(b) => on_buffer!(b),
        DynamicImage::ImageRgba16(b) => on_buffer!(b),
        // Float images do not come out of these four decoders; a future variant is converted.
        other => {
            let rgba = other.to_rgba8();
            on_buffer!(&rgba)
        }
    }
}

fn encode(
    thumb: &DynamicImage,
    format: ImageFormat,
    icc: Option<Vec<u8>>,
) -> Result<Vec<u8>, ThumbError> {
    let mut out = Vec::new();
    let encode_error = |e: image::ImageError| ThumbError::Encode(e.to_string());
    // An ICC profile the encoder refuses is dropped: colours shift slightly, nothing breaks.
    fn with_icc<E: ImageEncoder>(mut encoder: E, icc: Option<Vec<u8>>) -> E {
        if let Some(icc) = icc {
            let _ = encoder.set_icc_profile(icc);
        }
        encoder
    }
    match format {
        ImageFormat::Png => {
            // PNG holds every 8- and 16-bit layout; only float (never decoded here) converts.
            let converted = match thumb {
                DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
                    Some(DynamicImage::from(thumb.to_rgba8()))
                }
                _ => None,
            };
            converted
                .as_ref()
                .unwrap_or(thumb)
                .write_with_encoder(with_icc(PngEncoder::new(&mut out), icc))
                .map_err(encode_error)?;
        }
        ImageFormat::Jpeg => {
            // JPEG holds L8 or Rgb8; the encoder converts the rest (dropping alpha).
            thumb
                .write_with_encoder(with_icc(
                    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY),
                    icc,
                ))
                .map_err(encode_error)?;
        }
        ImageFormat::WebP => {
            // Converted to 8-bit L/La/Rgb/Rgba by the encoder as needed.
            thumb
                .write_with_encoder(with_icc(WebPEncoder::new_lossless(&mut out), icc))
                .map_err(encode_error)?;
        }
        ImageFormat::Gif => {
            let mut encoder = GifEncoder::new_with_speed(&mut out, GIF_SPEED);
            encoder
                .encode_frame(image::Frame::new(thumb.to_rgba8()))
                .map_err(encode_error)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GenericImageView, Rgba, RgbaImage};
    use proptest::prelude::*;

    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

    fn spec(width: u32, height: u32) -> ThumbSpec {
        ThumbSpec { width, height }
    }

    /// A test image with a gradient, so that encoders do real work and a wrong crop shows.
    fn gradient(width: u32, height: u32) -> RgbaImage {
        RgbaImage::from_fn(width, height, |x, y| {
            Rgba([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8, 255])
        })
    }

    fn encode_test_image(img: &RgbaImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        match format {
            ImageFormat::Png => img.write_with_encoder(PngEncoder::new(&mut out)).unwrap(),
            ImageFormat::Jpeg => DynamicImage::from(img.clone())
                .to_rgb8()
                .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 90))
                .unwrap(),
            ImageFormat::WebP => img
                .write_with_encoder(WebPEncoder::new_lossless(&mut out))
                .unwrap(),
            ImageFormat::Gif => GifEncoder::new_with_speed(&mut out, 30)
                .encode_frame(image::Frame::new(img.clone()))
                .unwrap(),
        }
        out
    }

    fn assert_magic(bytes: &[u8], format: ImageFormat) {
        let ok = match format {
            ImageFormat::Png => bytes.starts_with(PNG_MAGIC),
            ImageFormat::Jpeg => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
            ImageFormat::WebP => {
                bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP"
            }
            ImageFormat::Gif => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        };
        assert!(
            ok,
            "{format:?} output starts {:02x?}",
            &bytes[..bytes.len().min(12)]
        );
    }

    /// Renders and decodes the result, checking the format on the way.
    fn render_dims(original: &[u8], format: ImageFormat, s: ThumbSpec) -> (u32, u32) {
        let out = render(original, format, &s).unwrap();
        assert_magic(&out, format);
        image::load_from_memory_with_format(&out, format.to_image())
            .unwrap()
            .dimensions()
    }

    const ALL: [ImageFormat; 4] = [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::WebP,
        ImageFormat::Gif,
    ];

    // ---- spec parsing ----

    #[test]
    fn parses_valid_specs() {
        assert_eq!(parse_spec("200x200").unwrap(), spec(200, 200));
        assert_eq!(parse_spec("300x0").unwrap(), spec(300, 0));
        assert_eq!(parse_spec("0x120").unwrap(), spec(0, 120));
        assert_eq!(parse_spec("1x1").unwrap(), spec(1, 1));
        assert_eq!(parse_spec("2000x2000").unwrap(), spec(2000, 2000));
        assert_eq!(parse_spec("2000x0").unwrap(), spec(2000, 0));
        assert_eq!(parse_spec("0x2000").unwrap(), spec(0, 2000));
        assert_eq!(parse_spec("2000x0").unwrap().to_string(), "2000x0");
    }

    #[test]
    fn rejects_malformed_specs() {
        for s in [
            "",
            "x",
            "0x0",
            "-1x5",
            "5x-1",
            "200",
            "200x",
            "x200",
            "200x200x1",
            " 200x200",
            "200x200 ",
            "200 x200",
            "200X200",
            "+200x200",
            "200x+200",
            "0200x200",
            "200x00",
            "1.5x2",
            "2e3x1",
            "0x",
            "200x200\n",
            "２００x200",
            "200x200\0",
            "0xff",
            "99999999999999999999x1",
        ] {
            let e = parse_spec(s).unwrap_err();
            assert!(matches!(e, ThumbError::BadSpec(_)), "{s:?} gave {e:?}");
        }
    }

    #[test]
    fn rejects_specs_over_the_limit() {
        for s in [
            "2001x2001",
            "2001x1",
            "1x2001",
            "2001x0",
            "0x2001",
            "10000x10",
            "4294967296x1",
        ] {
            let e = parse_spec(s).unwrap_err();
            assert!(
                e.to_string().contains("at most 2000x2000"),
                "{s:?} gave {e}"
            );
        }
    }

    #[test]
    fn render_rechecks_a_spec_built_by_hand() {
        let png = encode_test_image(&gradient(8, 8), ImageFormat::Png);
        for s in [spec(0, 0), spec(2001, 10), spec(10, 5000)] {
            assert!(matches!(
                render(&png, ImageFormat::Png, &s),
                Err(ThumbError::BadSpec(_))
            ));
        }
    }

    #[test]
    fn format_of_mime_types() {
        assert_eq!(format_of("image/png"), Some(ImageFormat::Png));
        assert_eq!(format_of("image/jpeg"), Some(ImageFormat::Jpeg));
        assert_eq!(format_of("image/jpg"), Some(ImageFormat::Jpeg));
        assert_eq!(format_of("image/webp"), Some(ImageFormat::WebP));
        assert_eq!(format_of("image/gif"), Some(ImageFormat::Gif));
        assert_eq!(
            format_of("IMAGE/PNG; charset=binary"),
            Some(ImageFormat::Png)
        );
        for mime in [
            "image/svg+xml",
            "image/avif",
            "image/tiff",
            "application/pdf",
            "text/plain",
            "",
            "png",
        ] {
            assert_eq!(format_of(mime), None, "{mime}");
        }
        for f in ALL {
            assert_eq!(format_of(f.mime()), Some(f));
        }
    }

    // ---- geometry ----

    #[test]
    fn round_trips_every_format() {
        // 300×200: crop-to-fill both ways, and each keep-ratio form.
        for format in ALL {
            let original = encode_test_image(&gradient(300, 200), format);
            assert_eq!(
                render_dims(&original, format, spec(100, 100)),
                (100, 100),
                "{format:?}"
            );
            assert_eq!(
                render_dims(&original, format, spec(50, 120)),
                (50, 120),
                "{format:?}"
            );
            assert_eq!(
                render_dims(&original, format, spec(150, 0)),
                (150, 100),
                "{format:?}"
            );
            assert_eq!(
                render_dims(&original, format, spec(0, 50)),
                (75, 50),
                "{format:?}"
            );
            assert_eq!(
                render_dims(&original, format, spec(300, 200)),
                (300, 200),
                "{format:?}"
            );
        }
    }

    #[test]
    fn keep_ratio_rounds_and_never_reaches_zero() {
        let png = encode_test_image(&gradient(1000, 3), ImageFormat::Png);
        assert_eq!(render_dims(&png, ImageFormat::Png, spec(100, 0)), (100, 1));
        assert_eq!(render_dims(&png, ImageFormat::Png, spec(0, 2)), (667, 2));
    }

    #[test]
    fn crop_to_fill_takes_the_centre() {
        // Left third red, middle green, right third blue: a square thumbnail is all green.
        let img = RgbaImage::from_fn(300, 100, |x, _| match x {
            0..100 => Rgba([255, 0, 0, 255]),
            100..200 => Rgba([0, 255, 0, 255]),
            _ => Rgba([0, 0, 255, 255]),
        });
        let png = encode_test_image(&img, ImageFormat::Png);
        let out = render(&png, ImageFormat::Png, &spec(10, 10)).unwrap();
        let thumb = image::load_from_memory(&out).unwrap().to_rgba8();
        assert_eq!(thumb.dimensions(), (10, 10));
        assert!(thumb.pixels().all(|p| *p == Rgba([0, 255, 0, 255])));
    }

    #[test]
    fn never_upscales() {
        for format in ALL {
            let original = encode_test_image(&gradient(100, 50), format);
            // Keep-ratio forms keep the image's own size.
            assert_eq!(
                render_dims(&original, format, spec(400, 0)),
                (100, 50),
                "{format:?}"
            );
            assert_eq!(
                render_dims(&original, format, spec(0, 400)),
                (100, 50),
                "{format:?}"
            );
            // Crop-to-fill keeps the requested shape at the largest size the image holds.
            assert_eq!(
                render_dims(&original, format, spec(80, 80)),
                (50, 50),
                "{format:?}"
            );
            assert_eq!(
                render_dims(&original, format, spec(2000, 1000)),
                (100, 50),
                "{format:?}"
            );
            assert_eq!(
                render_dims(&original, format, spec(1000, 2000)),
                (25, 50),
                "{format:?}"
            );
            // One side fits, the other does not: still no side grows.
            assert_eq!(
                render_dims(&original, format, spec(60, 60)),
                (50, 50),
                "{format:?}"
            );
        }
    }

    #[test]
    fn plan_stays_inside_the_image() {
        for (w, h) in [
            (1, 1),
            (1, 7),
            (7, 1),
            (3, 2000),
            (20_000, 2500),
            (999, 1001),
        ] {
            for s in [
                spec(1, 1),
                spec(2000, 1),
                spec(1, 2000),
                spec(2000, 2000),
                spec(0, 1),
                spec(1, 0),
                spec(0, 2000),
                spec(2000, 0),
                spec(7, 3),
            ] {
                let p = plan(w, h, s);
                let (x, y, cw, ch) = p.crop;
                assert!(
                    cw >= 1 && ch >= 1 && x + cw <= w && y + ch <= h,
                    "{w}x{h} {s}: {p:?}"
                );
                assert!(p.out.0 >= 1 && p.out.1 >= 1, "{w}x{h} {s}: {p:?}");
                assert!(p.out.0 <= cw && p.out.1 <= ch, "{w}x{h} {s}: {p:?}");
            }
        }
    }

    #[test]
    fn exif_orientation_is_applied() {
        // Stored 40×20, EXIF orientation 6 (rotate 90° clockwise): displayed 20×40.
        let mut exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
        exif.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x00, 0x06, 0, 0]);
        exif.extend_from_slice(&[0, 0, 0, 0]);
        let mut original = Vec::new();
        let mut encoder = JpegEncoder::new_with_quality(&mut original, 90);
        encoder.set_exif_metadata(exif).unwrap();
        DynamicImage::from(gradient(40, 20))
            .to_rgb8()
            .write_with_encoder(encoder)
            .unwrap();
        assert_eq!(
            render_dims(&original, ImageFormat::Jpeg, spec(10, 0)),
            (10, 20)
        );
        assert_eq!(
            render_dims(&original, ImageFormat::Jpeg, spec(10, 5)),
            (10, 5)
        );
        assert_eq!(
            render_dims(&original, ImageFormat::Jpeg, spec(0, 400)),
            (20, 40)
        );
    }

    #[test]
    fn animated_gif_gives_its_first_frame() {
        let mut original = Vec::new();
        {
            let mut encoder = GifEncoder::new_with_speed(&mut original, 30);
            let red = RgbaImage::from_pixel(20, 20, Rgba([255, 0, 0, 255]));
            let blue = RgbaImage::from_pixel(20, 20, Rgba([0, 0, 255, 255]));
            encoder
                .encode_frames([image::Frame::new(red), image::Frame::new(blue)])
                .unwrap();
        }
        let out = render(&original, ImageFormat::Gif, &spec(10, 10)).unwrap();
        let thumb = image::load_from_memory(&out).unwrap().to_rgba8();
        assert_eq!(thumb.dimensions(), (10, 10));
        assert!(thumb.pixels().all(|p| p.0[0] > 200 && p.0[2] < 50));
    }

    #[test]
    fn sixteen_bit_and_grey_pngs_render() {
        let grey16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(64, 32, |x, _| {
            image::Luma([(x * 1000) as u16])
        });
        let mut png = Vec::new();
        grey16
            .write_with_encoder(PngEncoder::new(&mut png))
            .unwrap();
        assert_eq!(render_dims(&png, ImageFormat::Png, spec(16, 16)), (16, 16));
        for format in [ImageFormat::Jpeg, ImageFormat::WebP, ImageFormat::Gif] {
            // A grey PNG stored under another format's name is not that format.
            assert!(matches!(
                render(&png, format, &spec(16, 16)),
                Err(ThumbError::Undecodable(_))
            ));
        }
    }

    // ---- decompression bombs ----

    #[test]
    fn a_tall_strip_is_too_large() {
        let strip = image::GrayImage::new(1, 100_000);
        let mut png = Vec::new();
        strip.write_with_encoder(PngEncoder::new(&mut png)).unwrap();
        let e = render(&png, ImageFormat::Png, &spec(100, 100)).unwrap_err();
        assert!(matches!(e, ThumbError::TooLarge(_)), "{e:?}");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    /// A small valid PNG whose IHDR now declares `width × height`, with a correct CRC.
    fn png_declaring(width: u32, height: u32) -> Vec<u8> {
        let mut png = encode_test_image(&gradient(4, 4), ImageFormat::Png);
        // Signature (8), then IHDR: length (4), "IHDR" (4), width, height, 5 more bytes, CRC.
        assert_eq!(&png[12..16], b"IHDR");
        png[16..20].copy_from_slice(&width.to_be_bytes());
        png[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn crc_helper_matches_the_png_encoder() {
        let png = encode_test_image(&gradient(4, 4), ImageFormat::Png);
        assert_eq!(png_declaring(4, 4), png);
    }

    #[test]
    fn a_png_declaring_60000_squared_is_too_large_and_fast() {
        let png = png_declaring(60_000, 60_000);
        assert!(png.len() < 200);
        let started = std::time::Instant::now();
        let e = render(&png, ImageFormat::Png, &spec(100, 100)).unwrap_err();
        assert!(matches!(e, ThumbError::TooLarge(_)), "{e:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Under the side limit but over the pixel budget: refused by our own check.
        let e = render(
            &png_declaring(19_000, 19_000),
            ImageFormat::Png,
            &spec(100, 100),
        )
        .unwrap_err();
        assert!(e.to_string().contains("megapixels"), "{e}");
    }

    #[test]
    fn bombs_in_the_other_formats_are_too_large() {
        // GIF: logical screen size, little-endian u16s at bytes 6..10.
        let mut gif = encode_test_image(&gradient(4, 4), ImageFormat::Gif);
        gif[6..10].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        // JPEG: the SOF0 segment's height and width (after length and precision).
        let mut jpeg = encode_test_image(&gradient(4, 4), ImageFormat::Jpeg);
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000×60000
        // WebP lossless: 14-bit width-1 and height-1 right after the 0x2f signature.
        let mut webp = encode_test_image(&gradient(4, 4), ImageFormat::WebP);
        let vp8l = webp.windows(4).position(|w| w == b"VP8L").unwrap();
        assert_eq!(webp[vp8l + 8], 0x2f);
        let bits = u32::from_le_bytes(webp[vp8l + 9..vp8l + 13].try_into().unwrap());
        // 16383×16383 = 268 MP (the decoder reads 16384 as 0: `(1 + field) & 0x3FFF`).
        let bits = (bits & !0x0FFF_FFFF) | 0x3FFE | (0x3FFE << 14);
        webp[vp8l + 9..vp8l + 13].copy_from_slice(&bits.to_le_bytes());
        for (bytes, format) in [
            (gif, ImageFormat::Gif),
            (jpeg, ImageFormat::Jpeg),
            (webp, ImageFormat::WebP),
        ] {
            let started = std::time::Instant::now();
            let e = render(&bytes, format, &spec(100, 100)).unwrap_err();
            assert!(matches!(e, ThumbError::TooLarge(_)), "{format:?}: {e:?}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "{format:?}"
            );
        }
    }

    // ---- bad input ----

    #[test]
    fn garbage_and_truncated_input_is_undecodable() {
        for format in ALL {
            let original = encode_test_image(&gradient(64, 64), format);
            let garbage: Vec<u8> = (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect();
            for bytes in [
                &[][..],
                &b"hello"[..],
                &garbage[..],
                &original[..original.len() / 2],
                &original[..20],
            ] {
                let e = render(bytes, format, &spec(16, 16)).unwrap_err();
                assert!(matches!(e, ThumbError::Undecodable(_)), "{format:?}: {e:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn parse_spec_never_panics(s in any::<String>()) {
            let _ = parse_spec(&s);
        }

        #[test]
        fn parse_spec_accepts_what_display_prints(w in 0u32..=2000, h in 0u32..=2000) {
            prop_assume!(w > 0 || h > 0);
            prop_assert_eq!(parse_spec(&spec(w, h).to_string()), Ok(spec(w, h)));
        }

        #[test]
        fn render_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            format in proptest::sample::select(ALL.to_vec()),
        ) {
            // render_inner: without the catch_unwind net, so that a decoder panic shows here.
            let _ = render_inner(&bytes, format, spec(8, 8));
        }

        #[test]
        fn render_never_panics_on_corrupted_images(
            format in proptest::sample::select(ALL.to_vec()),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            w in 0u32..40,
            h in 0u32..40,
        ) {
            prop_assume!(w > 0 || h > 0);
            let mut bytes = encode_test_image(&gradient(24, 16), format);
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Ok(out) = render_inner(&bytes, format, spec(w, h)) {
                assert_magic(&out, format);
            }
        }
    }
}
