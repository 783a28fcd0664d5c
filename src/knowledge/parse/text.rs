//! Plain text: paragraphs are separated by blank lines; bulleted lines become list items.

use super::{encoding, BlockKind, BlockSink, DocumentFormat, ParseError, ParsedDocument};

pub fn parse(bytes: &[u8], charset: Option<&str>) -> Result<ParsedDocument, ParseError> {
    let text = encoding::decode_text(bytes, charset);
    let mut sink = BlockSink::default();
    push_paragraphs(&mut sink, &text);
    Ok(ParsedDocument {
        format: DocumentFormat::Text,
        title: None,
        blocks: sink.blocks,
    })
}

/// Splits text into paragraphs (blank-line separated) and list items.
pub(crate) fn push_paragraphs(sink: &mut BlockSink, text: &str) {
    let mut paragraph = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            flush(sink, &mut paragraph);
        } else if let Some(item) = list_item(trimmed) {
            flush(sink, &mut paragraph);
            sink.push(BlockKind::ListItem, item);
        } else {
            if !paragraph.is_empty() {
                paragraph.push(' ');
            }
            paragraph.push_str(trimmed);
        }
    }
    flush(sink, &mut paragraph);
}

fn flush(sink: &mut BlockSink, paragraph: &mut String) {
    if !paragraph.is_empty() {
        sink.push(BlockKind::Paragraph, paragraph);
        paragraph.clear();
    }
}

/// The text of a bulleted or numbered line ("- a", "• a", "3. a", "3) a").
fn list_item(line: &str) -> Option<&str> {
    for bullet in ["- ", "* ", "+ ", "• ", "· ", "– "] {
        if let Some(rest) = line.strip_prefix(bullet) {
            return Some(rest);
        }
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=3).contains(&digits) {
        let rest = &line[digits..];
        if rest.starts_with(". ") || rest.starts_with(") ") {
            // The number stays: "step 3" is something customers ask about.
            return Some(line);
        }
    }
    None
}
