//! XLSX through calamine: every visible worksheet, its name as the heading path, its header row
//! found among the first rows (title rows above it become paragraphs) and every data row rendered
//! `Header: value; Header: value`. Calamine inflates the zip itself, so the whole archive is
//! first inflated once through the zip-bomb guard.

use std::io::Cursor;

use calamine::{Data, Reader, SheetType, SheetVisible, Xlsx};

use super::zipguard::GuardedZip;
use super::{csv, docx, table, BlockKind, BlockSink, DocumentFormat, ParseError, ParseLimits, ParsedDocument};

/// How far down a sheet the header row is looked for.
const HEADER_SEARCH_ROWS: usize = 10;

pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<ParsedDocument, ParseError> {
    let mut zip = GuardedZip::open(bytes, limits)?;
    zip.verify_all()?;
    let title = zip.read("docProps/core.xml")?.and_then(|xml| {
        docx::core_title(&String::from_utf8_lossy(&xml))
    });
    let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(|e| match e {
        calamine::XlsxError::Password => ParseError::Encrypted,
        e => ParseError::corrupt(format!("unreadable workbook ({e})")),
    })?;
    let sheets: Vec<String> = workbook
        .sheets_metadata()
        .iter()
        .filter(|s| s.typ == SheetType::WorkSheet && s.visible == SheetVisible::Visible)
        .map(|s| s.name.clone())
        .collect();
    let mut sink = BlockSink::default();
    for name in sheets {
        let range = workbook
            .worksheet_range(&name)
            .map_err(|e| ParseError::corrupt(format!("unreadable sheet {name} ({e})")))?;
        let rows: Vec<Vec<String>> = range
            .rows()
            .map(|r| r.iter().map(cell_text).collect::<Vec<_>>())
            .filter(|r| r.iter().any(|c| !c.is_empty()))
            .collect();
        sink.root = vec![name];
        let header_at = rows
            .iter()
            .take(HEADER_SEARCH_ROWS)
            .position(|r| r.iter().filter(|c| !c.is_empty()).count() >= 2
                && table::is_header_row(r, 2))
            .unwrap_or(0);
        for title_row in &rows[..header_at] {
            sink.push(BlockKind::Paragraph, &table::render_row(None, title_row));
        }
        csv::push_rows(&mut sink, &rows[header_at..]);
    }
    Ok(ParsedDocument {
        format: DocumentFormat::Xlsx,
        title,
        blocks: sink.blocks,
    })
}

fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::DateTime(dt) => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            if dt.is_duration() || dt.as_f64() < 1.0 {
                // Time-of-day cells (opening hours) and durations.
                format!("{h:02}:{mi:02}")
            } else if h == 0 && mi == 0 && s == 0 {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
            }
        }
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        other => other.to_string().trim().to_string(),
    }
}
