//! TEMPORARY stand-in for the real parser (branch `kb-parse`): plain text and Markdown only, with
//! exactly the interface the real one exposes. Deleted when `kb-parse` is merged.

#[derive(Debug, Clone)]
pub struct ParseLimits {
    pub max_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Csv,
    Xlsx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Heading,
    Paragraph,
}

#[derive(Debug, Clone)]
pub struct ParsedDocument {
    pub format: DocumentFormat,
    pub title: Option<String>,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub text: String,
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
    pub kind: BlockKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("unsupported document type: {what}")]
    Unsupported { what: String },
    #[error("file is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the file is damaged: {reason}")]
    Corrupt { reason: String },
    #[error("the file is encrypted")]
    Encrypted,
    #[error("no extractable text")]
    NoExtractableText,
    #[error("refused a compressed file that expands too much: {reason}")]
    ZipBomb { reason: String },
    #[error("the file is empty")]
    Empty,
}

impl ParseError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported { .. } => "parse.unsupported",
            Self::TooLarge { .. } => "parse.too_large",
            Self::Corrupt { .. } => "parse.corrupt",
            Self::Encrypted => "parse.encrypted",
            Self::NoExtractableText => "parse.no_text",
            Self::ZipBomb { .. } => "parse.zip_bomb",
            Self::Empty => "parse.empty",
        }
    }
}

pub fn parse(
    bytes: &[u8],
    filename: &str,
    _declared_mime: Option<&str>,
    limits: &ParseLimits,
) -> Result<ParsedDocument, ParseError> {
    if bytes.len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let lower = filename.to_ascii_lowercase();
    let format = if lower.ends_with(".md") || lower.ends_with(".markdown") {
        DocumentFormat::Markdown
    } else if lower.ends_with(".txt") || !lower.contains('.') {
        DocumentFormat::Text
    } else if lower.ends_with(".html") || lower.ends_with(".htm") {
        return parse_html_page(bytes, None, limits);
    } else {
        return Err(ParseError::Unsupported {
            what: filename.rsplit('.').next().unwrap_or("").to_string(),
        });
    };
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::Corrupt {
        reason: e.to_string(),
    })?;
    Ok(text_blocks(format, text))
}

pub fn parse_html_page(
    bytes: &[u8],
    _content_type: Option<&str>,
    _limits: &ParseLimits,
) -> Result<ParsedDocument, ParseError> {
    let raw = String::from_utf8_lossy(bytes);
    let mut text = String::new();
    let mut in_tag = false;
    for c in raw.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push('\n');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let mut doc = text_blocks(DocumentFormat::Html, &text);
    if doc.blocks.is_empty() {
        return Err(ParseError::NoExtractableText);
    }
    doc.title = None;
    Ok(doc)
}

fn text_blocks(format: DocumentFormat, text: &str) -> ParsedDocument {
    let mut blocks = Vec::new();
    let mut headings: Vec<String> = Vec::new();
    for para in text.split("\n\n") {
        let para = para.trim();
        if para.is_empty() {
            continue;
        }
        if let Some(h) = para.strip_prefix('#') {
            let level = 1 + h.chars().take_while(|c| *c == '#').count();
            let title = h.trim_start_matches('#').trim().to_string();
            headings.truncate(level - 1);
            headings.push(title.clone());
            blocks.push(Block {
                text: title,
                heading_path: headings.clone(),
                page: None,
                kind: BlockKind::Heading,
            });
            continue;
        }
        blocks.push(Block {
            text: para.to_string(),
            heading_path: headings.clone(),
            page: None,
            kind: BlockKind::Paragraph,
        });
    }
    ParsedDocument {
        format,
        title: None,
        blocks,
    }
}
