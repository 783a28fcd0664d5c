//! Rendering of table rows (DOCX tables, CSV, XLSX, HTML and Markdown tables) as self-contained
//! lines: with a header row, `Item: Es Kopi Susu; Size: Large; Price (IDR): 34000`, so the
//! chunk holding one row answers "how much is a large Es Kopi Susu?" on its own.
//! `;` separates pairs because values themselves often hold commas (`3,50 €`).

/// Whether the first row of a table reads as column headers: some text, no numbers, and more
/// rows below it.
pub fn is_header_row(first: &[String], total_rows: usize) -> bool {
    total_rows >= 2
        && first.iter().any(|c| !c.trim().is_empty())
        && !first.iter().any(|c| looks_numeric(c))
}

pub fn render_row(header: Option<&[String]>, cells: &[String]) -> String {
    let pairs = cells.iter().enumerate().map(|(i, cell)| {
        (
            header.and_then(|h| h.get(i)).map(String::as_str),
            cell.as_str(),
        )
    });
    render_pairs(pairs, header.is_some())
}

/// Renders (column name, value) pairs; empty values are skipped, unnamed ones stand alone.
pub fn render_pairs<'a>(
    pairs: impl Iterator<Item = (Option<&'a str>, &'a str)>,
    has_header: bool,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (name, value) in pairs {
        let value = super::normalize_inline(value);
        if value.is_empty() {
            continue;
        }
        let name = name.map(super::normalize_inline).filter(|h| !h.is_empty());
        parts.push(match name {
            Some(name) => format!("{name}: {value}"),
            None => value,
        });
    }
    parts.join(if has_header { "; " } else { " | " })
}

fn looks_numeric(cell: &str) -> bool {
    let core: String = cell
        .chars()
        .filter(|c| {
            !c.is_whitespace() && !matches!(c, '$' | '€' | '£' | '¥' | '%' | ',' | '.' | '-' | '+')
        })
        .collect();
    let core = core.strip_prefix("Rp").unwrap_or(&core);
    !core.is_empty() && core.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn rows_render_with_headers_and_skip_empty_cells() {
        let header = row(&["Item", "Size", "Price"]);
        assert_eq!(
            render_row(Some(&header), &row(&["Es Kopi Susu", "", "34000", "extra"])),
            "Item: Es Kopi Susu; Price: 34000; extra"
        );
        assert_eq!(render_row(None, &row(&["a", " ", "b"])), "a | b");
    }

    #[test]
    fn header_detection() {
        assert!(is_header_row(&row(&["Item", "Price"]), 3));
        assert!(!is_header_row(&row(&["Coffee", "Rp 25.000"]), 3));
        assert!(!is_header_row(&row(&["Item", "Price"]), 1));
        assert!(!is_header_row(&row(&["", ""]), 3));
    }
}
