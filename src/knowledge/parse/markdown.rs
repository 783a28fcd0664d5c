//! Markdown (CommonMark + GFM tables): headings build the heading path; paragraphs, list items,
//! code blocks and table rows become blocks. Front matter and raw HTML are dropped.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::{encoding, table, BlockKind, BlockSink, DocumentFormat, ParseError, ParsedDocument};

pub fn parse(bytes: &[u8], charset: Option<&str>) -> Result<ParsedDocument, ParseError> {
    let text = encoding::decode_text(bytes, charset);
    let blocks = blocks(&text);
    let title = blocks
        .iter()
        .find(|b| b.kind == BlockKind::Heading && b.heading_path.len() == 1)
        .map(|b| b.text.clone());
    Ok(ParsedDocument {
        format: DocumentFormat::Markdown,
        title,
        blocks,
    })
}

/// Text being collected for the block that is open.
#[derive(Default)]
struct State {
    sink: BlockSink,
    buffer: String,
    heading: Option<u8>,
    code: bool,
    /// Nesting of list items; text inside an item becomes a list item block.
    items: usize,
    skip: usize,
    table_header: Vec<String>,
    table_row: Vec<String>,
    in_table_head: bool,
}

pub(crate) fn blocks(text: &str) -> Vec<super::Block> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS;
    let mut s = State::default();
    for event in Parser::new_ext(text, options) {
        if s.skip > 0 {
            match event {
                Event::Start(Tag::MetadataBlock(_)) => s.skip += 1,
                Event::End(TagEnd::MetadataBlock(_)) => s.skip -= 1,
                _ => {}
            }
            continue;
        }
        match event {
            Event::Start(tag) => s.start(tag),
            Event::End(tag) => s.end(tag),
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                s.buffer.push_str(&t)
            }
            Event::SoftBreak | Event::HardBreak => s.buffer.push(if s.code { '\n' } else { ' ' }),
            Event::TaskListMarker(done) => s.buffer.push_str(if done { "[x] " } else { "[ ] " }),
            Event::Html(_) | Event::InlineHtml(_) | Event::FootnoteReference(_) | Event::Rule => {}
        }
    }
    s.flush(BlockKind::Paragraph);
    s.sink.blocks
}

impl State {
    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::MetadataBlock(_) => self.skip = 1,
            Tag::Heading { level, .. } => {
                self.flush_open();
                self.heading = Some(level_number(level));
            }
            Tag::Paragraph | Tag::BlockQuote(_) | Tag::HtmlBlock => self.flush_open(),
            Tag::CodeBlock(_) => {
                self.flush_open();
                self.code = true;
            }
            Tag::List(_) => self.flush_open(),
            Tag::Item => {
                self.flush_open();
                self.items += 1;
            }
            Tag::Table(_) => {
                self.flush_open();
                self.table_header.clear();
            }
            Tag::TableHead => self.in_table_head = true,
            Tag::TableRow => self.table_row.clear(),
            Tag::TableCell => self.buffer.clear(),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                let level = self.heading.take().unwrap_or(1);
                let text = std::mem::take(&mut self.buffer);
                self.sink.heading(level, &text);
            }
            TagEnd::Paragraph => self.flush_open(),
            TagEnd::CodeBlock => {
                self.flush(BlockKind::Code);
                self.code = false;
            }
            TagEnd::Item => {
                self.flush(BlockKind::ListItem);
                self.items = self.items.saturating_sub(1);
            }
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.buffer);
                self.table_row.push(cell);
            }
            TagEnd::TableHead => {
                // GFM puts the header cells directly in TableHead, without a TableRow.
                self.table_header = std::mem::take(&mut self.table_row);
                self.in_table_head = false;
            }
            TagEnd::TableRow => {
                let header = (!self.table_header.is_empty()).then_some(&self.table_header[..]);
                let text = table::render_row(header, &self.table_row);
                self.sink.push(BlockKind::TableRow, &text);
                self.table_row.clear();
            }
            _ => {}
        }
    }

    /// Emits the text collected so far as the kind its context calls for.
    fn flush_open(&mut self) {
        let kind = if self.items > 0 {
            BlockKind::ListItem
        } else {
            BlockKind::Paragraph
        };
        self.flush(kind);
    }

    fn flush(&mut self, kind: BlockKind) {
        let text = std::mem::take(&mut self.buffer);
        if self.in_table_head {
            return;
        }
        self.sink.push(kind, &text);
    }
}

fn level_number(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}
