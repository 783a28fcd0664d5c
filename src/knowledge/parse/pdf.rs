//! PDF: the text layer, page by page, in reading order.
//!
//! pdf-extract (on lopdf) decodes fonts and positions every glyph; a collector here keeps the
//! positions and rebuilds lines, columns and paragraphs from them, so text drawn row by row across
//! two columns still reads column by column. Larger type becomes headings; lines repeated at the
//! top or bottom of most pages (running heads, page numbers) are dropped.
//!
//! Hostile files: streams are inflated once under a budget before lopdf sees them (a PDF can be
//! a deflate bomb too), form XObjects that draw themselves are refused (pdf-extract would
//! recurse until the stack overflows), extraction runs on its own thread with a large stack,
//! and each page runs behind `catch_unwind` because pdf-extract panics on malformed pages.

mod layout;

use std::collections::HashMap;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pdf_extract::{
    Dictionary, Document, MediaBox, Object, ObjectId, OutputDev, OutputError, Transform,
};

use super::{DocumentFormat, ParseError, ParseLimits, ParsedDocument};
use layout::{Glyph, PageText};

/// Stack for the extraction thread: pdf-extract and lopdf recurse over nested structures.
const EXTRACT_STACK: usize = 64 * 1024 * 1024;
/// Form XObjects drawn within form XObjects, deeper than any real document goes.
const MAX_FORM_DEPTH: usize = 32;
/// Form XObject invocations per document, a bound on "billion laughs" drawings.
const MAX_FORM_VISITS: usize = 100_000;

pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<ParsedDocument, ParseError> {
    check_stream_budget(bytes, limits.max_uncompressed_bytes)?;
    let max_glyphs = limits.max_uncompressed_bytes;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("pdf-extract".into())
            .stack_size(EXTRACT_STACK)
            .spawn_scoped(scope, || extract(bytes, max_glyphs))
            .map_err(|e| ParseError::corrupt(format!("could not start the PDF reader ({e})")))?;
        worker.join().unwrap_or_else(|_| {
            Err(ParseError::corrupt(
                "the PDF reader could not read this file",
            ))
        })
    })
}

fn extract(bytes: &[u8], max_glyphs: u64) -> Result<ParsedDocument, ParseError> {
    let doc = match catch_unwind(|| Document::load_mem(bytes)) {
        Ok(Ok(doc)) => doc,
        Ok(Err(pdf_extract::Error::Decryption(_) | pdf_extract::Error::InvalidPassword)) => {
            return Err(ParseError::Encrypted)
        }
        Ok(Err(e)) => return Err(ParseError::corrupt(format!("unreadable PDF ({e})"))),
        Err(_) => return Err(ParseError::corrupt("unreadable PDF structure")),
    };
    // lopdf opens a PDF whose user password is empty by itself; one that still reports an
    // encryption dictionary needs a password we do not have.
    if doc.is_encrypted() {
        return Err(ParseError::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(ParseError::corrupt("the PDF has no pages"));
    }
    if draws_recursively(&doc, &pages) {
        return Err(ParseError::corrupt(
            "the PDF's drawing instructions refer to themselves",
        ));
    }
    let mut collector = Collector {
        pages: Vec::new(),
        glyph_budget: max_glyphs,
        flip: Transform::identity(),
    };
    let mut failed = 0usize;
    for &number in pages.keys() {
        collector.pages.push(PageText::new(number));
        let run = catch_unwind(AssertUnwindSafe(|| {
            pdf_extract::output_doc_page(&doc, &mut collector, number)
        }));
        match run {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                failed += 1;
                if collector.glyph_budget == 0 {
                    return Err(ParseError::corrupt(
                        "the PDF holds more text than the limit",
                    ));
                }
            }
        }
    }
    if failed == pages.len() {
        return Err(ParseError::corrupt("no page of the PDF could be read"));
    }
    Ok(ParsedDocument {
        format: DocumentFormat::Pdf,
        title: info_title(&doc),
        blocks: layout::blocks(collector.pages),
    })
}

/// Receives glyphs from pdf-extract with their positions on the page.
struct Collector {
    pages: Vec<PageText>,
    glyph_budget: u64,
    /// Maps PDF user space (origin bottom left) to top-down page coordinates.
    flip: Transform,
}

impl OutputDev for Collector {
    fn begin_page(
        &mut self,
        _page_num: u32,
        media_box: &MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        self.flip = Transform::row_major(1., 0., 0., -1., 0., media_box.ury - media_box.lly);
        if let Some(page) = self.pages.last_mut() {
            page.height = (media_box.ury - media_box.lly).abs();
        }
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        text: &str,
    ) -> Result<(), OutputError> {
        if self.glyph_budget == 0 {
            return Err(OutputError::FormatError(std::fmt::Error));
        }
        self.glyph_budget -= 1;
        let position = trm.post_transform(&self.flip);
        // The font size scaled by the text matrix: the side of a square of the same area.
        let sx = font_size * (trm.m11 + trm.m21);
        let sy = font_size * (trm.m12 + trm.m22);
        let size = (sx * sy).abs().sqrt();
        let (x, y) = (position.m31, position.m32);
        if !(x.is_finite() && y.is_finite() && size.is_finite()) || size <= 0.0 {
            return Ok(());
        }
        if let Some(page) = self.pages.last_mut() {
            page.glyphs.push(Glyph {
                x,
                y,
                width: (width * size).max(0.0),
                size,
                text: text.to_string(),
            });
        }
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// Refuses PDFs whose Flate streams (other than images, which text extraction never inflates)
/// inflate past the budget: lopdf inflates without a limit. The scan is over raw bytes, so it
/// runs before any PDF parser allocates.
fn check_stream_budget(bytes: &[u8], budget: u64) -> Result<(), ParseError> {
    let mut total: u64 = 0;
    let mut from = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(found) = find(&bytes[from..], b"stream") {
        let keyword = from + found;
        from = keyword + 6;
        // `endstream` also contains "stream"; a data start follows only `stream` + EOL.
        if keyword >= 3 && &bytes[keyword - 3..keyword] == b"end" {
            continue;
        }
        let mut start = from;
        if bytes.get(start) == Some(&b'\r') {
            start += 1;
        }
        if bytes.get(start) != Some(&b'\n') {
            continue;
        }
        start += 1;
        let dict_from = keyword.saturating_sub(2048);
        let dict = &bytes[dict_from..keyword];
        let dict = match rfind(dict, b"obj") {
            Some(at) => &dict[at..],
            None => dict,
        };
        if find(dict, b"FlateDecode").is_none() || find(dict, b"/Image").is_some() {
            continue;
        }
        let end = find(&bytes[start..], b"endstream").map_or(bytes.len(), |e| start + e);
        let mut decoder = flate2::read::ZlibDecoder::new(&bytes[start..end]);
        loop {
            match decoder.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total = total.saturating_add(n as u64);
                    if total > budget {
                        return Err(ParseError::ZipBomb {
                            reason: format!(
                                "its compressed streams inflate past the {} MiB limit",
                                budget / (1024 * 1024)
                            ),
                        });
                    }
                }
            }
        }
        from = end;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn resolve<'a>(doc: &'a Document, object: &'a Object) -> Option<&'a Object> {
    doc.dereference(object).ok().map(|(_, o)| o)
}

fn dict_entry<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Dictionary> {
    dict.get(key)
        .ok()
        .and_then(|o| resolve(doc, o))
        .and_then(|o| o.as_dict().ok())
}

/// A page's resources, inherited from its ancestors as pdf-extract looks them up.
fn page_resources(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
    let mut dict = doc.get_dictionary(page).ok()?;
    for _ in 0..64 {
        if let Some(resources) = dict_entry(doc, dict, b"Resources") {
            return Some(resources);
        }
        let parent = dict.get(b"Parent").ok()?.as_reference().ok()?;
        dict = doc.get_dictionary(parent).ok()?;
    }
    None
}

/// Whether drawing any page would recurse through form XObjects forever (or absurdly deep),
/// following names the way pdf-extract resolves them, including forms that borrow their
/// caller's resources.
fn draws_recursively(doc: &Document, pages: &std::collections::BTreeMap<u32, ObjectId>) -> bool {
    let mut names_cache: HashMap<ObjectId, Vec<Vec<u8>>> = HashMap::new();
    let mut visits = 0usize;
    for &page in pages.values() {
        let Some(resources) = page_resources(doc, page) else {
            continue;
        };
        let content = doc.get_page_content(page).unwrap_or_default();
        let names = do_names(&content);
        // (form, resources) pairs on the current path; resources compared by address.
        let mut stack: Vec<(Vec<Vec<u8>>, &Dictionary, usize)> = vec![(names, resources, 0)];
        let mut path: Vec<(ObjectId, usize)> = Vec::new();
        while let Some((mut names, resources, depth)) = stack.pop() {
            path.truncate(depth);
            let Some(name) = names.pop() else { continue };
            stack.push((names, resources, depth));
            visits += 1;
            if visits > MAX_FORM_VISITS {
                return true;
            }
            let Some(id) = dict_entry(doc, resources, b"XObject")
                .and_then(|x| x.get(&name).ok())
                .and_then(|o| o.as_reference().ok())
            else {
                continue;
            };
            let Ok(stream) = doc.get_object(id).and_then(Object::as_stream) else {
                continue;
            };
            let is_form =
                stream.dict.get(b"Subtype").and_then(Object::as_name).ok() == Some(b"Form");
            if !is_form {
                continue;
            }
            let inner = dict_entry(doc, &stream.dict, b"Resources").unwrap_or(resources);
            let key = (id, inner as *const Dictionary as usize);
            if depth >= MAX_FORM_DEPTH || path.contains(&key) {
                return true;
            }
            path.push(key);
            let inner_names = names_cache
                .entry(id)
                .or_insert_with(|| {
                    let content = stream
                        .decompressed_content()
                        .unwrap_or_else(|_| stream.content.clone());
                    do_names(&content)
                })
                .clone();
            stack.push((inner_names, inner, depth + 1));
        }
    }
    false
}

/// Names drawn with `Do` in a content stream.
fn do_names(content: &[u8]) -> Vec<Vec<u8>> {
    if find(content, b"Do").is_none() {
        return Vec::new();
    }
    let Ok(ops) = pdf_extract::content::Content::decode(content) else {
        return Vec::new();
    };
    ops.operations
        .iter()
        .filter(|op| op.operator == "Do")
        .filter_map(|op| {
            op.operands
                .first()
                .and_then(|o| o.as_name().ok())
                .map(<[u8]>::to_vec)
        })
        .collect()
}

/// The document title from the Info dictionary, if it has a usable one.
fn info_title(doc: &Document) -> Option<String> {
    let info = doc
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|o| resolve(doc, o))?;
    let title = info
        .as_dict()
        .ok()?
        .get(b"Title")
        .ok()
        .and_then(|o| resolve(doc, o))?;
    let Object::String(bytes, _) = title else {
        return None;
    };
    let text = if bytes.starts_with(&[0xfe, 0xff]) {
        encoding_rs::UTF_16BE.decode(bytes).0.into_owned()
    } else {
        // PDFDocEncoding matches Latin-1 for the printable characters titles use.
        bytes.iter().map(|&b| b as char).collect()
    };
    let text = super::normalize_inline(&text);
    (!text.is_empty() && !text.eq_ignore_ascii_case("untitled")).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn do_names_finds_drawn_xobjects() {
        assert_eq!(
            do_names(b"q /Fm1 Do Q /Im2 Do"),
            vec![b"Fm1".to_vec(), b"Im2".to_vec()]
        );
        assert!(do_names(b"BT (hi) Tj ET").is_empty());
    }

    #[test]
    fn stream_budget_stops_a_deflate_bomb() {
        use std::io::Write;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; 8 * 1024 * 1024]).unwrap();
        let compressed = encoder.finish().unwrap();
        let mut pdf = b"%PDF-1.4\n1 0 obj << /Length 9 /Filter /FlateDecode >> stream\n".to_vec();
        pdf.extend_from_slice(&compressed);
        pdf.extend_from_slice(b"\nendstream endobj\n");
        assert!(check_stream_budget(&pdf, 16 * 1024 * 1024).is_ok());
        assert!(matches!(
            check_stream_budget(&pdf, 1024 * 1024),
            Err(ParseError::ZipBomb { .. })
        ));
    }
}
