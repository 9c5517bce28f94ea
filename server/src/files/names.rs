//! Stored file names and types.
//!
//! A stored name is the client's name made safe (no path, no control characters, short), with
//! a random suffix so two uploads never collide and names cannot be guessed from each other,
//! and the extension of the type the bytes actually have: `../../photo.exe` that is a PNG is
//! stored as `photo_k3x9a2mq7d.png`.

use rand::Rng;

/// Longest kept part of the client's name (characters).
const STEM_MAX: usize = 60;
const SUFFIX_LEN: usize = 10;

/// The type of a file from its first bytes: magic numbers first; text is `text/plain` when it
/// is valid UTF-8 without NUL; anything else `application/octet-stream`.
pub fn sniff(head: &[u8]) -> String {
    if let Some(t) = infer::get(head) {
        return t.mime_type().to_owned();
    }
    // A cut in the middle of a multi-byte character at the end of the sniffed bytes is fine.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    if valid && !head.contains(&0) {
        "text/plain".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

/// Whether `mime` is allowed by a field's list (`image/*` wildcards; empty list = any type).
pub fn mime_allowed(allowed: &[String], mime: &str) -> bool {
    allowed.is_empty()
        || allowed.iter().any(|a| {
            a == mime
                || a == "*/*"
                || a.strip_suffix("/*")
                    .is_some_and(|family| mime.split('/').next() == Some(family))
        })
}

/// The types stored names get a proper extension for, and that extension (one table for both
/// directions: naming an upload and serving it).
const TYPES: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/heic", "heic"),
    ("image/heif", "heic"),
    ("image/avif", "avif"),
    ("image/svg+xml", "svg"),
    ("application/pdf", "pdf"),
    ("video/mp4", "mp4"),
    ("video/quicktime", "mov"),
    ("audio/mpeg", "mp3"),
    ("application/zip", "zip"),
    ("text/plain", "txt"),
];

/// The usual extension of a type (`bin` for any other).
fn extension(mime: &str) -> &'static str {
    TYPES
        .iter()
        .find(|(m, _)| *m == mime)
        .map_or("bin", |(_, ext)| ext)
}

/// The `Content-Type` a stored name is served with (its extension was chosen from the bytes).
/// SVG goes out as a download type: it can carry script.
pub fn served_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("");
    match TYPES.iter().find(|(_, e)| *e == ext).map(|(m, _)| *m) {
        Some("image/svg+xml") | None => "application/octet-stream",
        Some("text/plain") => "text/plain; charset=utf-8",
        Some(mime) => mime,
    }
}

/// A safe stored name for a file the client called `client` and whose bytes are `mime`.
pub fn stored_name(client: &str, mime: &str) -> String {
    // Only the last path segment, either separator.
    let base = client.rsplit(['/', '\\']).next().unwrap_or("");
    let stem = match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    };
    let mut clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(STEM_MAX)
        .collect();
    let trimmed = clean.trim_matches('_').to_owned();
    clean = if trimmed.is_empty() {
        "file".to_owned()
    } else {
        trimmed
    };
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..SUFFIX_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{clean}_{suffix}.{}", extension(mime))
}

/// Whether `name` could be a name [`stored_name`] made (used before touching storage with a
/// name from a request or a job).
pub fn is_stored_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= STEM_MAX + SUFFIX_LEN + 8
        && !name.starts_with('.')
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_made_safe() {
        let n = stored_name("../../etc/Photo One.EXE", "image/png");
        assert!(n.starts_with("photo_one_"), "{n}");
        assert!(n.ends_with(".png"));
        assert!(is_stored_name(&n));
        assert!(stored_name("a\0b\\c.txt", "text/plain").starts_with("c_"));
        assert!(stored_name("", "application/pdf").starts_with("file_"));
        assert!(stored_name(".htaccess", "text/plain").starts_with("htaccess_"));
        let long = "x".repeat(2000);
        assert!(stored_name(&long, "image/gif").len() < 90);
        assert_ne!(
            stored_name("a.png", "image/png"),
            stored_name("a.png", "image/png")
        );
        for bad in ["", "../x", "a/b", "A.png", "a\0", ".x", "a..b"] {
            assert!(!is_stored_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn stored_names_are_served_with_their_type() {
        for (mime, served) in [
            ("image/png", "image/png"),
            ("image/jpeg", "image/jpeg"),
            ("image/heif", "image/heic"),
            ("text/plain", "text/plain; charset=utf-8"),
            ("image/svg+xml", "application/octet-stream"),
            ("application/x-unknown", "application/octet-stream"),
        ] {
            assert_eq!(served_type(&stored_name("a", mime)), served, "{mime}");
        }
    }

    #[test]
    fn types_come_from_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        assert_eq!(sniff(&png), "image/png");
        assert_eq!(sniff(b"hello, world"), "text/plain");
        assert_eq!(sniff(&[0xff, 0x00, 0x13, 0x37]), "application/octet-stream");
        assert!(mime_allowed(&[], "x/y"));
        assert!(mime_allowed(&["image/*".into()], "image/png"));
        assert!(!mime_allowed(&["image/*".into()], "text/plain"));
        assert!(!mime_allowed(&["image/png".into()], "image/jpeg"));
    }

    proptest! {
        #[test]
        fn stored_names_are_always_safe(client in ".{0,300}", mime in "[a-z/+.-]{0,30}") {
            let n = stored_name(&client, &mime);
            prop_assert!(is_stored_name(&n), "{}", n);
        }

        #[test]
        fn sniff_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = sniff(&bytes);
        }
    }
}
