//! CSV and other delimited text: the delimiter (`,` `;` tab `|`) is sniffed from the first
//! records, the encoding detected like any text file, and each row rendered with its headers.

use super::{encoding, table, BlockKind, BlockSink, DocumentFormat, ParseError, ParsedDocument};

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
const SNIFF_RECORDS: usize = 50;

pub fn parse(bytes: &[u8], charset: Option<&str>) -> Result<ParsedDocument, ParseError> {
    let text = encoding::decode_text(bytes, charset);
    let delimiter = sniff_delimiter(&text);
    let rows: Vec<Vec<String>> = reader(&text, delimiter)
        .records()
        .filter_map(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect::<Vec<_>>())
        .filter(|r| r.iter().any(|c| !c.trim().is_empty()))
        .collect();
    let mut sink = BlockSink::default();
    push_rows(&mut sink, &rows);
    Ok(ParsedDocument {
        format: DocumentFormat::Csv,
        title: None,
        blocks: sink.blocks,
    })
}

/// Renders rows of a table as `TableRow` blocks, using the first row as headers when it reads
/// like one. Shared with the spreadsheet parser.
pub(crate) fn push_rows(sink: &mut BlockSink, rows: &[Vec<String>]) {
    let Some(first) = rows.first() else {
        return;
    };
    let header = table::is_header_row(first, rows.len()).then_some(&first[..]);
    let body = if header.is_some() { &rows[1..] } else { rows };
    for row in body {
        sink.push(BlockKind::TableRow, &table::render_row(header, row));
    }
}

fn reader(text: &str, delimiter: u8) -> ::csv::Reader<&[u8]> {
    ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
}

/// The delimiter that splits the first records into the same number (> 1) of fields most often.
fn sniff_delimiter(text: &str) -> u8 {
    let mut best = (b',', 0usize);
    for delimiter in DELIMITERS {
        let counts: Vec<usize> = reader(text, delimiter)
            .records()
            .take(SNIFF_RECORDS)
            .filter_map(Result::ok)
            .map(|r| r.len())
            .collect();
        let Some(mode) = mode(&counts) else { continue };
        if mode < 2 {
            continue;
        }
        let consistent = counts.iter().filter(|&&c| c == mode).count();
        // More consistent rows win; among equals, more columns (a comma inside "3,50" splits
        // fewer rows evenly than the real `;`).
        let score = consistent * 1000 + mode.min(999);
        if score > best.1 {
            best = (delimiter, score);
        }
    }
    best.0
}

fn mode(counts: &[usize]) -> Option<usize> {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let mut best: Option<(usize, usize)> = None;
    for group in sorted.chunk_by(|a, b| a == b) {
        if best.is_none_or(|(_, n)| group.len() > n) {
            best = Some((group[0], group.len()));
        }
    }
    best.map(|(value, _)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_are_sniffed() {
        assert_eq!(sniff_delimiter("a;b;c\n1,5;2;3\n4;5,5;6\n"), b';');
        assert_eq!(sniff_delimiter("a,b\n1,2\n"), b',');
        assert_eq!(sniff_delimiter("a\tb\tc\n1\t2\t3\n"), b'\t');
        assert_eq!(sniff_delimiter("a|b\n1|2\n"), b'|');
        assert_eq!(sniff_delimiter("just one column\nof text\n"), b',');
    }
}
