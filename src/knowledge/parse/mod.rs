//! Document parsing: bytes of an uploaded file (or a fetched web page) into a flat list of text
//! blocks that remember their heading path and page, ready for chunking.
//!
//! Every parser runs on hostile input: sizes are checked before work starts, zip containers are
//! checked for bombs before anything is inflated, and third-party code that is known to panic on
//! malformed files (the PDF text extractor) runs behind `catch_unwind`, so a bad file becomes a
//! [`ParseError`] with a reason a tenant can act on, never a crashed worker.

mod csv;
mod docx;
pub(crate) mod encoding;
mod html;
mod markdown;
mod pdf;
mod table;
mod text;
mod xlsx;
mod zipguard;

#[cfg(test)]
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Limits applied before and while parsing. The defaults suit uploads by a tenant's staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Largest total a zip container (DOCX, XLSX) may inflate to, declared or actual.
    pub max_uncompressed_bytes: u64,
    /// Largest inflated-to-compressed ratio of a zip container once it inflates past
    /// [`ZIP_RATIO_FLOOR`] bytes (tiny XML parts legitimately compress very well).
    pub max_zip_ratio: u64,
}

/// Below this many inflated bytes the ratio guard stays quiet: real DOCX/XLSX parts of a few
/// hundred kilobytes routinely compress 50-200x.
pub const ZIP_RATIO_FLOOR: u64 = 4 * 1024 * 1024;

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_bytes: 20 * 1024 * 1024,
            max_uncompressed_bytes: 200 * 1024 * 1024,
            max_zip_ratio: 100,
        }
    }
}

/// The formats wacrm can extract text from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentFormat {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Csv,
    Xlsx,
}

impl DocumentFormat {
    /// Stable lowercase name, for storage and API payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentFormat::Text => "text",
            DocumentFormat::Markdown => "markdown",
            DocumentFormat::Html => "html",
            DocumentFormat::Pdf => "pdf",
            DocumentFormat::Docx => "docx",
            DocumentFormat::Csv => "csv",
            DocumentFormat::Xlsx => "xlsx",
        }
    }
}

/// A parsed document: an optional title and its text blocks in reading order.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    pub format: DocumentFormat,
    pub title: Option<String>,
    pub blocks: Vec<Block>,
}

/// One unit of text. `heading_path` lists the enclosing headings, outermost first; a
/// [`BlockKind::Heading`] block's path ends with its own text. Spreadsheets use the sheet name.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub text: String,
    pub heading_path: Vec<String>,
    /// 1-based page number, for paginated formats (PDF).
    pub page: Option<u32>,
    pub kind: BlockKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    Heading,
    Paragraph,
    ListItem,
    /// One table or sheet row, rendered `Header: value; Header: value` when the table has a
    /// header row, so each row stands on its own in retrieval.
    TableRow,
    Code,
}

/// Why a document could not be parsed. `Display` is the reason shown to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unsupported file type: {what}")]
    Unsupported { what: String },
    #[error("file is too large (the limit is {} MiB)", limit.div_ceil(1024 * 1024))]
    TooLarge { limit: usize },
    #[error("the file is damaged or not what its name says: {reason}")]
    Corrupt { reason: String },
    #[error("the document is encrypted (password protected); upload an unprotected copy")]
    Encrypted,
    #[error("no extractable text (is this a scanned PDF?)")]
    NoExtractableText,
    #[error("rejected as a possible zip bomb: {reason}")]
    ZipBomb { reason: String },
    #[error("the document is empty (no text found)")]
    Empty,
}

impl ParseError {
    /// Stable machine-readable code, for storage and API payloads.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Unsupported { .. } => "unsupported",
            ParseError::TooLarge { .. } => "too_large",
            ParseError::Corrupt { .. } => "corrupt",
            ParseError::Encrypted => "encrypted",
            ParseError::NoExtractableText => "no_extractable_text",
            ParseError::ZipBomb { .. } => "zip_bomb",
            ParseError::Empty => "empty",
        }
    }

    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        ParseError::Corrupt {
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        ParseError::Unsupported { what: what.into() }
    }
}

/// Works out what a file is. Magic bytes win over the name, so a PNG renamed `.pdf` is refused
/// as an image and a DOCX renamed `.txt` still parses as DOCX; text formats, which have no magic,
/// go by extension, then declared MIME type, then a look at the content.
pub fn detect_format(
    bytes: &[u8],
    filename: &str,
    declared_mime: Option<&str>,
) -> Result<DocumentFormat, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if is_pdf(bytes) {
        return Ok(DocumentFormat::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return zipguard::office_kind(bytes);
    }
    if is_encrypted_office(bytes) {
        return Err(ParseError::Encrypted);
    }
    if let Some(what) = known_binary(bytes) {
        return Err(ParseError::unsupported(what));
    }
    let ext = extension(filename);
    let mime = declared_mime
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    // A name or type that promises a binary format the bytes do not match: say it is damaged
    // rather than indexing binary garbage as text.
    match (ext.as_str(), mime.as_str()) {
        ("pdf", _) | (_, "application/pdf") => {
            return Err(ParseError::corrupt("not a PDF file (no %PDF header)"))
        }
        ("docx" | "xlsx", _) => {
            return Err(ParseError::corrupt(format!(
                "not a .{ext} file (not a zip container)"
            )))
        }
        _ => {}
    }
    if let Some(format) = text_format_by_extension(&ext) {
        return Ok(format);
    }
    if let Some(format) = text_format_by_mime(&mime) {
        return Ok(format);
    }
    if !looks_like_text(bytes) {
        let what = if ext.is_empty() {
            "binary file".to_string()
        } else {
            format!("binary .{ext} file")
        };
        return Err(ParseError::unsupported(what));
    }
    if sniff_html(bytes) {
        return Ok(DocumentFormat::Html);
    }
    Ok(DocumentFormat::Text)
}

/// Parses an uploaded file of any supported format.
pub fn parse(
    bytes: &[u8],
    filename: &str,
    declared_mime: Option<&str>,
    limits: &ParseLimits,
) -> Result<ParsedDocument, ParseError> {
    check_size(bytes, limits)?;
    let format = detect_format(bytes, filename, declared_mime)?;
    let charset = declared_mime.and_then(encoding::charset_from_content_type);
    let doc = guarded(|| match format {
        DocumentFormat::Text => text::parse(bytes, charset.as_deref()),
        DocumentFormat::Markdown => markdown::parse(bytes, charset.as_deref()),
        DocumentFormat::Html => html::parse(bytes, charset.as_deref(), html::Mode::Document),
        DocumentFormat::Pdf => pdf::parse(bytes, limits),
        DocumentFormat::Docx => docx::parse(bytes, limits),
        DocumentFormat::Csv => csv::parse(bytes, charset.as_deref()),
        DocumentFormat::Xlsx => xlsx::parse(bytes, limits),
    })?;
    finish(doc)
}

/// Parses a fetched web page for URL ingestion: besides the markup boilerplate removed from
/// uploaded HTML, it keeps only the page's main content when the page marks it (`<main>`,
/// `<article>`, `role="main"`) and drops link lists and blocks whose class or id says they are
/// navigation, cookie banners, sharing widgets and the like.
pub fn parse_html_page(
    bytes: &[u8],
    content_type: Option<&str>,
    limits: &ParseLimits,
) -> Result<ParsedDocument, ParseError> {
    check_size(bytes, limits)?;
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let charset = content_type.and_then(encoding::charset_from_content_type);
    let doc = guarded(|| html::parse(bytes, charset.as_deref(), html::Mode::WebPage))?;
    finish(doc)
}

fn check_size(bytes: &[u8], limits: &ParseLimits) -> Result<(), ParseError> {
    if bytes.len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    Ok(())
}

/// Runs a parser, turning a panic inside it (or inside a crate it calls) into `Corrupt`.
fn guarded(
    f: impl FnOnce() -> Result<ParsedDocument, ParseError>,
) -> Result<ParsedDocument, ParseError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(ParseError::corrupt("the parser could not read this file")),
    }
}

/// Drops empty blocks and titles, and refuses a document with nothing left.
fn finish(mut doc: ParsedDocument) -> Result<ParsedDocument, ParseError> {
    doc.blocks.retain(|b| !b.text.trim().is_empty());
    doc.title = doc
        .title
        .map(|t| normalize_inline(&t))
        .filter(|t| !t.is_empty());
    if doc.blocks.is_empty() {
        return Err(if doc.format == DocumentFormat::Pdf {
            ParseError::NoExtractableText
        } else {
            ParseError::Empty
        });
    }
    Ok(doc)
}

fn is_pdf(bytes: &[u8]) -> bool {
    // The header may follow up to 1 KiB of junk (PDF 1.7, annex H).
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(5).any(|w| w == b"%PDF-")
}

/// Password-protected DOCX/XLSX files are not zips but OLE containers holding an
/// `EncryptedPackage` stream (MS-OFFCRYPTO).
fn is_encrypted_office(bytes: &[u8]) -> bool {
    const OLE: &[u8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1";
    let marker: Vec<u8> = "EncryptedPackage"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    bytes.starts_with(OLE) && bytes.windows(marker.len()).any(|w| w == marker)
}

fn known_binary(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "PNG image"),
        (b"\xff\xd8\xff", "JPEG image"),
        (b"GIF87a", "GIF image"),
        (b"GIF89a", "GIF image"),
        (b"RIFF", "RIFF media file (WebP, WAV or AVI)"),
        (b"II*\x00", "TIFF image"),
        (b"MM\x00*", "TIFF image"),
        (b"BM", "BMP image"),
        (b"MZ", "Windows executable"),
        (b"\x7fELF", "ELF executable"),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            "legacy Office file (.doc/.xls): save it as .docx or .xlsx",
        ),
        (b"\x1f\x8b", "gzip archive"),
        (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
        (b"Rar!", "RAR archive"),
        (b"{\\rtf", "RTF document: save it as .docx"),
        (b"OggS", "Ogg media file"),
        (b"ID3", "MP3 audio"),
        (b"PK\x05\x06", "empty zip archive"),
    ];
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Some("MP4/HEIC media file");
    }
    MAGIC
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|(_, what)| *what)
}

fn extension(filename: &str) -> String {
    let name = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn text_format_by_extension(ext: &str) -> Option<DocumentFormat> {
    Some(match ext {
        "txt" | "text" | "log" => DocumentFormat::Text,
        "md" | "markdown" | "mdown" | "mkd" => DocumentFormat::Markdown,
        "html" | "htm" | "xhtml" => DocumentFormat::Html,
        "csv" | "tsv" | "tab" => DocumentFormat::Csv,
        _ => return None,
    })
}

fn text_format_by_mime(mime: &str) -> Option<DocumentFormat> {
    Some(match mime {
        "text/plain" => DocumentFormat::Text,
        "text/markdown" | "text/x-markdown" => DocumentFormat::Markdown,
        "text/html" | "application/xhtml+xml" => DocumentFormat::Html,
        "text/csv" | "text/tab-separated-values" | "application/csv" => DocumentFormat::Csv,
        _ => return None,
    })
}

/// Text has no NUL bytes, except UTF-16, which announces itself with a BOM or, without one,
/// with a NUL in every other byte.
fn looks_like_text(bytes: &[u8]) -> bool {
    if encoding::bom_encoding(bytes).is_some() || encoding::looks_like_bomless_utf16(bytes) {
        return true;
    }
    let sample = &bytes[..bytes.len().min(8192)];
    let controls = sample
        .iter()
        .filter(|&&b| b < 0x09 || ((0x0e..0x20).contains(&b) && b != 0x1b))
        .count();
    !sample.contains(&0) && controls * 100 <= sample.len()
}

fn sniff_html(bytes: &[u8]) -> bool {
    let head = encoding::decode_prefix(bytes, 1024).to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<html")
}

/// Collapses runs of whitespace (including non-breaking spaces) into single spaces.
pub(crate) fn normalize_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c.is_whitespace() || c == '\u{a0}' || c == '\u{200b}') {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Accumulates blocks while tracking the heading path; every parser with headings uses it.
#[derive(Debug, Default)]
pub(crate) struct BlockSink {
    pub blocks: Vec<Block>,
    /// (level, text) of the open headings, outermost first.
    headings: Vec<(u8, String)>,
    pub page: Option<u32>,
    /// Prefix for every heading path (a spreadsheet's sheet name).
    pub root: Vec<String>,
}

impl BlockSink {
    pub fn heading(&mut self, level: u8, text: &str) {
        let text = normalize_inline(text);
        if text.is_empty() {
            return;
        }
        self.headings.retain(|(l, _)| *l < level);
        self.headings.push((level, text.clone()));
        self.push_normalized(BlockKind::Heading, text);
    }

    pub fn push(&mut self, kind: BlockKind, text: &str) {
        let text = if kind == BlockKind::Code {
            text.trim_matches('\n').to_string()
        } else {
            normalize_inline(text)
        };
        self.push_normalized(kind, text);
    }

    fn push_normalized(&mut self, kind: BlockKind, text: String) {
        if text.trim().is_empty() {
            return;
        }
        self.blocks.push(Block {
            text,
            heading_path: self.path(),
            page: self.page,
            kind,
        });
    }

    pub fn path(&self) -> Vec<String> {
        self.root
            .iter()
            .cloned()
            .chain(self.headings.iter().map(|(_, t)| t.clone()))
            .collect()
    }
}
