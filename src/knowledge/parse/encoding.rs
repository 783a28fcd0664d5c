//! Character encodings of text uploads: a BOM wins, then what the transport or the file itself
//! declares, then UTF-8 if the bytes are valid UTF-8, then a statistical guess (chardetng, the
//! detector Firefox uses for unlabelled legacy pages), which is how Windows-1252 price lists
//! exported by old tills come out right.

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

/// How much of a file chardetng looks at; enough for a confident guess, bounded for speed.
const DETECT_SAMPLE: usize = 64 * 1024;

/// The encoding announced by a byte-order mark.
pub fn bom_encoding(bytes: &[u8]) -> Option<&'static Encoding> {
    Encoding::for_bom(bytes).map(|(enc, _)| enc)
}

/// UTF-16 without a BOM shows up as a NUL in every other byte of mostly-ASCII text.
pub fn looks_like_bomless_utf16(bytes: &[u8]) -> bool {
    bomless_utf16(bytes).is_some()
}

fn bomless_utf16(bytes: &[u8]) -> Option<&'static Encoding> {
    let sample = &bytes[..bytes.len().min(1024) & !1];
    if sample.len() < 4 {
        return None;
    }
    let pairs = sample.len() / 2;
    let even_zero = sample.iter().step_by(2).filter(|&&b| b == 0).count();
    let odd_zero = sample
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|&&b| b == 0)
        .count();
    if odd_zero * 10 >= pairs * 7 && even_zero * 10 <= pairs {
        Some(UTF_16LE)
    } else if even_zero * 10 >= pairs * 7 && odd_zero * 10 <= pairs {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// The `charset` parameter of a Content-Type value, if any.
pub fn charset_from_content_type(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim().trim_matches(['"', '\'']).trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// Decodes a text file. `declared` is a charset label from the upload's Content-Type.
pub fn decode_text(bytes: &[u8], declared: Option<&str>) -> String {
    let encoding = bom_encoding(bytes)
        .or_else(|| declared.and_then(|l| Encoding::for_label(l.as_bytes())))
        .unwrap_or_else(|| sniff(bytes));
    decode_with(bytes, encoding)
}

/// Decodes an HTML document following the HTML standard's order: BOM, transport charset,
/// `<meta>` prescan, then detection.
pub fn decode_html(bytes: &[u8], transport: Option<&str>) -> String {
    let encoding = bom_encoding(bytes)
        .or_else(|| transport.and_then(|l| Encoding::for_label(l.as_bytes())))
        .or_else(|| bomless_utf16(bytes))
        .or_else(|| meta_charset(bytes))
        .unwrap_or_else(|| sniff(bytes));
    decode_with(bytes, encoding)
}

/// Decodes at most `max` leading bytes, for format sniffing.
pub fn decode_prefix(bytes: &[u8], max: usize) -> String {
    let prefix = &bytes[..bytes.len().min(max)];
    let encoding = bom_encoding(prefix)
        .or_else(|| bomless_utf16(prefix))
        .unwrap_or(UTF_8);
    decode_with(prefix, encoding)
}

fn decode_with(bytes: &[u8], encoding: &'static Encoding) -> String {
    // `decode` strips a BOM matching the encoding and replaces malformed sequences with U+FFFD.
    let (text, _, _) = encoding.decode(bytes);
    text.into_owned()
}

fn sniff(bytes: &[u8]) -> &'static Encoding {
    if let Some(enc) = bomless_utf16(bytes) {
        return enc;
    }
    if std::str::from_utf8(bytes).is_ok() {
        return UTF_8;
    }
    let sample = &bytes[..bytes.len().min(DETECT_SAMPLE)];
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
    detector.feed(sample, sample.len() == bytes.len());
    detector.guess(None, Utf8Detection::Allow)
}

/// The charset of a `<meta charset>` or `<meta http-equiv="Content-Type">` in the first KiB.
fn meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head: String = bytes[..bytes.len().min(1024)]
        .iter()
        .map(|&b| (b as char).to_ascii_lowercase())
        .collect();
    let mut rest = head.as_str();
    while let Some(start) = rest.find("<meta") {
        let tag_and_after = &rest[start + 5..];
        let tag = &tag_and_after[..tag_and_after.find('>').unwrap_or(tag_and_after.len())];
        if let Some(label) = charset_in_tag(tag) {
            if let Some(enc) = Encoding::for_label(label.as_bytes()) {
                // A document that declares UTF-16 in an ASCII-compatible meta tag cannot be
                // UTF-16 (HTML standard, "prescan"): it is UTF-8.
                return Some(if enc == UTF_16LE || enc == UTF_16BE {
                    UTF_8
                } else {
                    enc
                });
            }
        }
        rest = tag_and_after;
    }
    None
}

fn charset_in_tag(tag: &str) -> Option<String> {
    let at = tag.find("charset")?;
    let after = tag[at + "charset".len()..].trim_start();
    let value = after.strip_prefix('=')?.trim_start();
    let value = value.trim_start_matches(['"', '\'']);
    let label: String = value
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    (!label.is_empty()).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_charset_is_read() {
        assert_eq!(
            charset_from_content_type("text/html; Charset=\"windows-1252\"").as_deref(),
            Some("windows-1252")
        );
        assert_eq!(charset_from_content_type("text/html"), None);
    }

    #[test]
    fn windows_1252_is_detected_without_a_label() {
        let bytes = b"Caf\xe9 cr\xe8me costs 3,50 \x80 and cr\xe8me br\xfbl\xe9e 4,20 \x80";
        assert_eq!(
            decode_text(bytes, None),
            "Café crème costs 3,50 € and crème brûlée 4,20 €"
        );
    }

    #[test]
    fn utf16_with_and_without_bom() {
        let text = "Jam buka 07.00–22.00";
        let le: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        let mut with_bom = vec![0xff, 0xfe];
        with_bom.extend_from_slice(&le);
        assert_eq!(decode_text(&with_bom, None), text);
        assert_eq!(decode_text(&le, None), text);
        assert_eq!(decode_text(&be, None), text);
    }

    #[test]
    fn meta_charset_is_honoured_and_utf16_meta_means_utf8() {
        let html = b"<html><head><meta charset='windows-1252'></head><body>\x93hi\x94</body>";
        assert!(decode_html(html, None).contains("\u{201c}hi\u{201d}"));
        let html = "<meta charset=utf-16><p>é</p>".as_bytes();
        assert!(decode_html(html, None).contains('é'));
        let http_equiv =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\">\xe9";
        assert!(decode_html(http_equiv, None).ends_with('é'));
    }

    #[test]
    fn transport_charset_beats_meta() {
        let html = b"<meta charset=utf-8><p>\xe9</p>";
        assert!(decode_html(html, Some("windows-1252")).contains('é'));
    }
}
