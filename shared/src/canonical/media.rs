//! What a media part (an image, a PDF, audio, a file) can cost in input tokens on the model it
//! goes to, as each provider documents it, so that a reservation is never below what can be
//! billed:
//! - OpenAI, tile models (gpt-4o, gpt-4.1, gpt-4.5, o1, o3, gpt-5): `detail: low` is the base;
//!   otherwise the image is fitted into 2048x2048, its shortest side scaled to 768, and each
//!   512px tile costs `tile` on top of `base` (at most 8 tiles). gpt-4o-mini is the same with
//!   base 2833 and tile 5667.
//! - OpenAI, patch models (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini): 32px patches, at most
//!   1536, times the model's multiplier (at most 2.46).
//! - Anthropic (Claude, on Anthropic or Bedrock): 28px patches, and an image past the largest
//!   size is scaled down, so at most 4,784 tokens (the high-resolution tier's 2576px edge).
//! - Gemini: 258 for an image within 384x384, else 258 per tile of min(w,h)/1.5 clamped to
//!   256..768; Gemini 3 caps one image at 2,240 (`media_resolution` ultra high); the larger
//!   of the two is reserved.
//!
//! Where no formula bounds a part (a PDF, whose pages are each text plus an image; an image
//! of an unknown size for Gemini or on an unknown model; a provider-side file id) it is
//! reserved at the model's context window: nothing can be billed past that. Audio and other
//! inline files are reserved at their decoded size, one token per byte (the text extracted
//! from a file is at most its bytes, and every documented audio rate is far below a token per
//! byte of any audio codec's bitrate).

use base64::Engine;

use crate::provider_type::ProviderType;

/// One media part, as far as its bytes tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Media {
    /// An image: its size, when its header could be read, and whether it asked for `detail: low`.
    Image { size: Option<(u64, u64)>, low_detail: bool },
    /// A PDF, inline.
    Pdf,
    /// Audio, inline: its decoded bytes.
    Audio { bytes: i64 },
    /// Any other inline file (text, CSV, ...): its decoded bytes.
    File { bytes: i64 },
    /// Something the gateway cannot see: a provider-side file id, or a file by URL.
    Unseen,
}

/// How a model's family counts images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Tiles {
        base: i64,
        tile: i64,
    },
    /// Patches, with the multiplier in hundredths.
    Patches {
        multiplier: i64,
    },
    Anthropic,
    Gemini,
    Unknown,
}

/// The family of `model` (its upstream id) on a provider of type `provider`.
fn family(provider: ProviderType, model: &str) -> Family {
    let name = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let name = name.as_str();
    let small = |families: &[&str]| families.iter().any(|f| name.starts_with(f)) && (name.contains("-mini") || name.contains("-nano"));
    if name.contains("claude") {
        Family::Anthropic
    } else if name.contains("gemini") {
        Family::Gemini
    } else if name.starts_with("gpt-4o-mini") {
        Family::Tiles { base: 2833, tile: 5667 }
    } else if small(&["gpt-4.1", "gpt-5", "o4"]) {
        Family::Patches { multiplier: 246 }
    } else if ["gpt-4o", "gpt-4.1", "gpt-4.5", "chatgpt-4o", "o1", "o3", "gpt-5"].iter().any(|f| name.starts_with(f)) {
        // The dearest of these (gpt-4o, gpt-4.1, gpt-4.5: 85 + 170 per tile).
        Family::Tiles { base: 85, tile: 170 }
    } else {
        match provider {
            ProviderType::Anthropic => Family::Anthropic,
            ProviderType::Gemini | ProviderType::Vertex => Family::Gemini,
            _ => Family::Unknown,
        }
    }
}

const ANTHROPIC_MAX: i64 = 4_784;
const GEMINI_TILE: i64 = 258;
const GEMINI_3_MAX: i64 = 2_240;
const PATCH_CAP: i64 = 1_536;
const MAX_TILES: i64 = 8;

fn ceil_div(a: u64, b: u64) -> i64 {
    i64::try_from(a.div_ceil(b.max(1))).unwrap_or(i64::MAX)
}

/// OpenAI's tile count for a high-detail image of `w` x `h`: fitted into 2048x2048, its short
/// side then scaled to 768 (up too, which can only count more), so at most 4 x 2 tiles.
fn tiles(w: u64, h: u64) -> i64 {
    let (mut w, mut h) = (w.max(1) as f64, h.max(1) as f64);
    let fit = (2048.0 / w.max(h)).min(1.0);
    (w, h) = (w * fit, h * fit);
    let short = 768.0 / w.min(h);
    (w, h) = (w * short, h * short);
    ((w / 512.0).ceil() as i64 * (h / 512.0).ceil() as i64).clamp(1, MAX_TILES)
}

/// The most input tokens `media` can be billed on `model` (of provider type `provider`), or
/// `None` when no documented bound applies (the caller reserves the context window).
pub fn worst_tokens(media: &Media, provider: ProviderType, model: &str) -> Option<i64> {
    let family = family(provider, model);
    match media {
        Media::Image { size, low_detail } => match (family, size) {
            (Family::Tiles { base, .. }, _) if *low_detail => Some(base),
            (Family::Tiles { base, tile }, Some((w, h))) => Some(base + tile * tiles(*w, *h)),
            (Family::Tiles { base, tile }, None) => Some(base + tile * MAX_TILES),
            (Family::Patches { multiplier }, Some((w, h))) => Some((ceil_div(*w, 32).saturating_mul(ceil_div(*h, 32))).min(PATCH_CAP) * multiplier / 100 + 1),
            (Family::Patches { multiplier }, None) => Some(PATCH_CAP * multiplier / 100 + 1),
            (Family::Anthropic, Some((w, h))) => Some(ceil_div(*w, 28).saturating_mul(ceil_div(*h, 28)).min(ANTHROPIC_MAX)),
            (Family::Anthropic, None) => Some(ANTHROPIC_MAX),
            (Family::Gemini, Some((w, h))) => {
                let tiled = if *w <= 384 && *h <= 384 {
                    GEMINI_TILE
                } else {
                    let side = ((*w).min(*h) as f64 / 1.5).clamp(256.0, 768.0) as u64;
                    ceil_div(*w, side).saturating_mul(ceil_div(*h, side)).saturating_mul(GEMINI_TILE)
                };
                Some(tiled.max(GEMINI_3_MAX))
            }
            (Family::Gemini | Family::Unknown, None) | (Family::Unknown, Some(_)) => None,
        },
        Media::Audio { bytes } | Media::File { bytes } => Some(*bytes),
        Media::Pdf | Media::Unseen => None,
    }
}

/// A `data:` URL's media type and its payload decoded as far as `prefix` bytes, and the whole
/// payload's decoded size.
fn data_url(url: &str, prefix: usize) -> Option<(String, Vec<u8>, i64)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    let mime = meta.split(';').next().unwrap_or_default().to_ascii_lowercase();
    if !meta.contains(";base64") {
        return Some((mime, payload.as_bytes().iter().take(prefix).copied().collect(), payload.len() as i64));
    }
    let payload = payload.trim_end_matches('=');
    let decoded_len = (payload.len() as i64).saturating_mul(3) / 4;
    // Base64 decodes in groups of four characters: a prefix of whole groups decodes alone.
    let take = payload.len().min(prefix.div_ceil(3) * 4) / 4 * 4;
    let head = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&payload[..take]).unwrap_or_default();
    Some((mime, head, decoded_len))
}

/// How much of an image is decoded to find its size: headers before a JPEG's frame (EXIF,
/// colour profiles) can be long; past this, the size counts as unknown.
const IMAGE_HEADER_BYTES: usize = 128 * 1024;

/// An image part's URL (a `data:` URL or a link) and its `detail`, as a media part.
pub fn image(url: &str, detail: Option<&str>) -> Media {
    let low_detail = detail == Some("low");
    let size = data_url(url, IMAGE_HEADER_BYTES).and_then(|(_, head, _)| imagesize::blob_size(&head).ok()).map(|s| (s.width as u64, s.height as u64));
    Media::Image { size, low_detail }
}

/// A file part's inline data (a `data:` URL, or bare base64 with its type unknown).
pub fn file(data: &str) -> Media {
    match data_url(data, 8) {
        Some((mime, _, _)) if mime == "application/pdf" => Media::Pdf,
        Some((mime, _, bytes)) if mime.starts_with("audio/") => Media::Audio { bytes },
        Some((mime, head, _)) if mime.starts_with("image/") || imagesize::image_type(&head).is_ok() => image(data, None),
        Some((_, head, _)) if head.starts_with(b"%PDF") => Media::Pdf,
        Some((_, _, bytes)) => Media::File { bytes },
        // Bare base64: read its start to tell a PDF; anything else by its decoded size.
        None => match data_url(&format!("data:;base64,{}", &data[..data.len().min(16)]), 8) {
            Some((_, head, _)) if head.starts_with(b"%PDF") => Media::Pdf,
            _ => Media::File { bytes: (data.len() as i64).saturating_mul(3) / 4 },
        },
    }
}

/// Audio sent inline as base64 (`input_audio.data`).
pub fn audio(base64: &str) -> Media {
    Media::Audio { bytes: (base64.len() as i64).saturating_mul(3) / 4 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG's first bytes: the signature and an IHDR chunk with this size.
    pub fn png(w: u32, h: u32) -> String {
        let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];
        bytes.extend(w.to_be_bytes());
        bytes.extend(h.to_be_bytes());
        bytes.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
        format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    #[test]
    fn images_cost_what_each_provider_documents() {
        let big = image(&png(4096, 2048), None);
        assert_eq!(big, Media::Image { size: Some((4096, 2048)), low_detail: false });
        // OpenAI's own example: 2048x4096 high detail on gpt-4o is 85 + 170 x 6 = 1105.
        assert_eq!(worst_tokens(&image(&png(2048, 4096), Some("high")), ProviderType::OpenAi, "gpt-4o"), Some(1105));
        assert_eq!(worst_tokens(&image(&png(2048, 4096), Some("low")), ProviderType::OpenAi, "gpt-4o"), Some(85));
        assert_eq!(worst_tokens(&image("https://x/y.png", None), ProviderType::OpenAi, "gpt-4o"), Some(85 + 170 * 8));
        assert_eq!(worst_tokens(&image("https://x/y.png", None), ProviderType::OpenRouter, "openai/gpt-4o-mini"), Some(2833 + 5667 * 8));
        assert_eq!(worst_tokens(&image(&png(1024, 1024), None), ProviderType::OpenAi, "gpt-4.1-mini"), Some(1024 * 246 / 100 + 1));
        assert_eq!(worst_tokens(&image(&png(1000, 1000), None), ProviderType::Anthropic, "claude-sonnet-4-5"), Some(36 * 36));
        assert_eq!(worst_tokens(&image(&png(9000, 9000), None), ProviderType::Bedrock, "anthropic.claude-3-5-sonnet"), Some(4784));
        assert_eq!(worst_tokens(&image(&png(300, 300), None), ProviderType::Gemini, "gemini-2.5-pro"), Some(2240));
        assert_eq!(
            worst_tokens(&image(&png(8000, 8000), None), ProviderType::Vertex, "gemini-2.5-pro"),
            Some(11 * 11 * 258),
            "768px tiles past Gemini 3's cap"
        );
        assert_eq!(worst_tokens(&image("https://x/y.png", None), ProviderType::Gemini, "gemini-2.5-pro"), None, "unsized: the context window");
        assert_eq!(worst_tokens(&image(&png(64, 64), None), ProviderType::OpenAiCompatible, "llava"), None, "no formula: the context window");
    }

    #[test]
    fn files_and_audio_are_sized_by_their_bytes_or_not_at_all() {
        let pdf = format!("data:application/pdf;base64,{}", base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7 ..."));
        assert_eq!(file(&pdf), Media::Pdf);
        assert_eq!(worst_tokens(&Media::Pdf, ProviderType::OpenAi, "gpt-4o"), None);
        let text = format!("data:text/plain;base64,{}", base64::engine::general_purpose::STANDARD.encode("x".repeat(3000)));
        assert_eq!(file(&text), Media::File { bytes: 3000 });
        assert_eq!(worst_tokens(&audio(&"A".repeat(4000)), ProviderType::OpenAi, "gpt-4o-audio-preview"), Some(3000));
    }
}
