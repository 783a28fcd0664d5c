//! DOCX (WordprocessingML): paragraphs in document order, headings recognised by their style
//! (the built-in "Heading N"/"Title" styles or any style with an outline level), list paragraphs
//! as list items, and tables rendered row by row with their header row. The XML is read as a
//! stream, so nesting depth costs no stack.

use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::zipguard::GuardedZip;
use super::{
    encoding, normalize_inline, table, BlockKind, BlockSink, DocumentFormat, ParseError,
    ParseLimits, ParsedDocument,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StyleRole {
    Heading(u8),
    List,
}

pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<ParsedDocument, ParseError> {
    let mut zip = GuardedZip::open(bytes, limits)?;
    let main = zip
        .main_part()?
        .filter(|p| zip.contains(p))
        .unwrap_or_else(|| "word/document.xml".to_string());
    let document = zip
        .read(&main)?
        .ok_or_else(|| ParseError::corrupt("the document has no word/document.xml part"))?;
    let styles = match zip.read("word/styles.xml")? {
        Some(xml) => style_roles(&xml_text(&xml)),
        None => HashMap::new(),
    };
    let title = zip
        .read("docProps/core.xml")?
        .and_then(|xml| core_title(&xml_text(&xml)));
    let blocks = body_blocks(&xml_text(&document), &styles)?;
    Ok(ParsedDocument {
        format: DocumentFormat::Docx,
        title,
        blocks,
    })
}

fn xml_text(bytes: &[u8]) -> String {
    encoding::decode_text(bytes, Some("utf-8"))
}

fn attr(e: &BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// Heading and list roles of the document's paragraph styles, by style id.
fn style_roles(xml: &str) -> HashMap<String, StyleRole> {
    let mut roles = HashMap::new();
    let mut reader = Reader::from_str(xml);
    let mut current: Option<(String, Option<String>, Option<u8>)> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == "style" => {
                current = attr(&e, "styleId").map(|id| (id, None, None));
            }
            Ok(Event::Start(e) | Event::Empty(e)) => match e.local_name().as_ref() {
                "name" => {
                    if let Some(cur) = current.as_mut() {
                        cur.1 = attr(&e, "val");
                    }
                }
                "outlineLvl" => {
                    if let Some(cur) = current.as_mut() {
                        cur.2 = attr(&e, "val").and_then(|v| v.parse::<u8>().ok());
                    }
                }
                _ => {}
            },
            Ok(Event::End(e)) if e.local_name().as_ref() == "style" => {
                if let Some((id, name, outline)) = current.take() {
                    if let Some(role) = role_of(&id, name.as_deref(), outline) {
                        roles.insert(id, role);
                    }
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    roles
}

fn role_of(id: &str, name: Option<&str>, outline: Option<u8>) -> Option<StyleRole> {
    let name = name.unwrap_or(id).to_ascii_lowercase();
    if name == "title" {
        return Some(StyleRole::Heading(1));
    }
    if let Some(n) = name.strip_prefix("heading").map(str::trim) {
        if let Ok(level) = n.parse::<u8>() {
            return Some(StyleRole::Heading(level.clamp(1, 9)));
        }
    }
    // Outline level 9 means "body text".
    if let Some(level) = outline.filter(|l| *l < 9) {
        return Some(StyleRole::Heading(level + 1));
    }
    if name.starts_with("list") {
        return Some(StyleRole::List);
    }
    None
}

pub(crate) fn core_title(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut in_title = false;
    let mut title = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == "title" => in_title = true,
            Ok(Event::End(e)) if e.local_name().as_ref() == "title" => break,
            Ok(Event::Text(t)) if in_title => title.push_str(&t.xml10_content()),
            Ok(Event::GeneralRef(r)) if in_title => push_ref(&mut title, &r),
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    let title = normalize_inline(&title);
    (!title.is_empty()).then_some(title)
}

fn push_ref(out: &mut String, r: &quick_xml::events::BytesRef<'_>) {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        out.push(c);
    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r.xml10_content()) {
        out.push_str(s);
    }
}

#[derive(Default)]
struct Paragraph {
    text: String,
    role: Option<StyleRole>,
    numbered: bool,
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
    header_rows: usize,
}

fn body_blocks(
    xml: &str,
    styles: &HashMap<String, StyleRole>,
) -> Result<Vec<super::Block>, ParseError> {
    let mut sink = BlockSink::default();
    let mut reader = Reader::from_str(xml);
    let mut paragraphs: Vec<Paragraph> = Vec::new();
    let mut tables: Vec<Table> = Vec::new();
    let mut in_text = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ParseError::corrupt(format!("malformed document.xml ({e})")))?;
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                "p" => paragraphs.push(Paragraph::default()),
                "t" => in_text = true,
                "tbl" => tables.push(Table::default()),
                "tr" => {
                    if let Some(t) = tables.last_mut() {
                        t.row.clear();
                    }
                }
                "tc" => {
                    if let Some(t) = tables.last_mut() {
                        t.cell.clear();
                    }
                }
                name => paragraph_property(name, &e, paragraphs.last_mut(), styles),
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                "tab" | "br" | "cr" => {
                    if let Some(p) = paragraphs.last_mut() {
                        p.text.push(' ');
                    }
                }
                "noBreakHyphen" => {
                    if let Some(p) = paragraphs.last_mut() {
                        p.text.push('-');
                    }
                }
                "tblHeader" => {
                    if let Some(t) = tables.last_mut() {
                        t.header_rows = t.rows.len() + 1;
                    }
                }
                name => paragraph_property(name, &e, paragraphs.last_mut(), styles),
            },
            Event::Text(t) if in_text => {
                if let Some(p) = paragraphs.last_mut() {
                    p.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if in_text => {
                if let Some(p) = paragraphs.last_mut() {
                    push_ref(&mut p.text, &r);
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    if let Some(p) = paragraphs.pop() {
                        end_paragraph(p, &mut sink, &mut tables);
                    }
                }
                "tc" => {
                    if let Some(t) = tables.last_mut() {
                        let cell = normalize_inline(&std::mem::take(&mut t.cell));
                        t.row.push(cell);
                    }
                }
                "tr" => {
                    if let Some(t) = tables.last_mut() {
                        let row = std::mem::take(&mut t.row);
                        t.rows.push(row);
                    }
                }
                "tbl" => {
                    if let Some(t) = tables.pop() {
                        end_table(t, &mut sink, &mut tables);
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(sink.blocks)
}

fn paragraph_property(
    name: &str,
    e: &BytesStart<'_>,
    paragraph: Option<&mut Paragraph>,
    styles: &HashMap<String, StyleRole>,
) {
    let Some(p) = paragraph else { return };
    match name {
        "pStyle" => {
            if let Some(role) = attr(e, "val").and_then(|id| styles.get(&id).copied()) {
                p.role = Some(role);
            }
        }
        "outlineLvl" => {
            if let Some(level) = attr(e, "val").and_then(|v| v.parse::<u8>().ok()) {
                if level < 9 {
                    p.role = Some(StyleRole::Heading(level + 1));
                }
            }
        }
        "numPr" => p.numbered = true,
        _ => {}
    }
}

fn end_paragraph(p: Paragraph, sink: &mut BlockSink, tables: &mut [Table]) {
    if let Some(t) = tables.last_mut() {
        // Paragraphs inside a cell make up the cell's text.
        if !t.cell.is_empty() {
            t.cell.push(' ');
        }
        t.cell.push_str(&p.text);
        return;
    }
    match p.role {
        Some(StyleRole::Heading(level)) => sink.heading(level, &p.text),
        Some(StyleRole::List) => sink.push(BlockKind::ListItem, &p.text),
        None if p.numbered => sink.push(BlockKind::ListItem, &p.text),
        None => sink.push(BlockKind::Paragraph, &p.text),
    }
}

fn end_table(t: Table, sink: &mut BlockSink, outer: &mut [Table]) {
    let rows: Vec<Vec<String>> = t
        .rows
        .into_iter()
        .filter(|r| r.iter().any(|c| !c.is_empty()))
        .collect();
    let Some(first) = rows.first() else { return };
    let header = (t.header_rows > 0 || table::is_header_row(first, rows.len())) && rows.len() > 1;
    let header = header.then_some(&first[..]);
    let body = if header.is_some() {
        &rows[1..]
    } else {
        &rows[..]
    };
    let rendered = body.iter().map(|row| table::render_row(header, row));
    if let Some(parent) = outer.last_mut() {
        // A table inside a cell becomes part of that cell's text.
        for line in rendered {
            if !parent.cell.is_empty() {
                parent.cell.push_str(" / ");
            }
            parent.cell.push_str(&line);
        }
        return;
    }
    for line in rendered {
        sink.push(BlockKind::TableRow, &line);
    }
}
