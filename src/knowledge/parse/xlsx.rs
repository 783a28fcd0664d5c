//! XLSX through calamine: every visible worksheet, its name as the heading path, its header row
//! found among the first rows (title rows above it become paragraphs) and every data row rendered
//! `Header: value; Header: value`. Calamine inflates the zip itself, so the whole archive is
//! first inflated once through the zip-bomb guard.

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{DataRef, Reader, SheetType, SheetVisible, Xlsx};

use super::zipguard::GuardedZip;
use super::{
    docx, table, BlockKind, BlockSink, DocumentFormat, ParseError, ParseLimits, ParsedDocument,
};

/// How far down a sheet the header row is looked for.
const HEADER_SEARCH_ROWS: usize = 10;

pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<ParsedDocument, ParseError> {
    let mut zip = GuardedZip::open(bytes, limits)?;
    zip.verify_all()?;
    let title = zip
        .read("docProps/core.xml")?
        .and_then(|xml| docx::core_title(&String::from_utf8_lossy(&xml)));
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
        let rows = sheet_rows(&mut workbook, &name)?;
        sink.root = vec![name];
        push_sheet(&mut sink, &rows);
    }
    Ok(ParsedDocument {
        format: DocumentFormat::Xlsx,
        title,
        blocks: sink.blocks,
    })
}

/// Non-empty cells by row, then column. Read cell by cell rather than as a dense range: a sheet
/// can declare (or use) A1 and XFD1048576 only, and a dense range of that would not fit in memory.
type SheetRows = BTreeMap<u32, BTreeMap<u32, String>>;

fn sheet_rows(workbook: &mut Xlsx<Cursor<&[u8]>>, name: &str) -> Result<SheetRows, ParseError> {
    let unreadable =
        |e: calamine::XlsxError| ParseError::corrupt(format!("unreadable sheet {name} ({e})"));
    let mut reader = workbook.worksheet_cells_reader(name).map_err(unreadable)?;
    let mut rows = SheetRows::new();
    while let Some(cell) = reader.next_cell().map_err(unreadable)? {
        let text = cell_text(cell.get_value());
        if !text.is_empty() {
            let (row, col) = cell.get_position();
            rows.entry(row).or_default().insert(col, text);
        }
    }
    Ok(rows)
}

fn push_sheet(sink: &mut BlockSink, rows: &SheetRows) {
    let values = |row: &BTreeMap<u32, String>| row.values().cloned().collect::<Vec<_>>();
    let header_at = rows
        .values()
        .take(HEADER_SEARCH_ROWS)
        .position(|r| r.len() >= 2 && table::is_header_row(&values(r), 2) && rows.len() > 1);
    let mut header: Option<&BTreeMap<u32, String>> = None;
    for (i, row) in rows.values().enumerate() {
        match header_at {
            Some(at) if i < at => {
                // Title rows above the header ("Price list 2024").
                sink.push(BlockKind::Paragraph, &table::render_row(None, &values(row)));
            }
            Some(at) if i == at => header = Some(row),
            _ => {
                let pairs = row.iter().map(|(col, value)| {
                    (
                        header.and_then(|h| h.get(col)).map(String::as_str),
                        value.as_str(),
                    )
                });
                sink.push(
                    BlockKind::TableRow,
                    &table::render_pairs(pairs, header.is_some()),
                );
            }
        }
    }
}

fn cell_text(cell: &DataRef<'_>) -> String {
    match cell {
        DataRef::Empty => String::new(),
        DataRef::SharedString(s) => s.trim().to_string(),
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => {
            s.trim().to_string()
        }
        DataRef::Int(i) => i.to_string(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::Error(e) => e.to_string(),
        DataRef::DateTime(dt) => {
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
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        DataRef::Float(f) => f.to_string(),
    }
}
