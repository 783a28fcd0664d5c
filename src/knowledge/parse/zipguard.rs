//! Zip containers (DOCX, XLSX) opened defensively. A zip bomb is refused three ways: by the
//! sizes its central directory declares, by the inflated-to-compressed ratio, and by counting the
//! bytes actually inflated (declared sizes can lie), stopping the moment a budget is spent.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::{DocumentFormat, ParseError, ParseLimits, ZIP_RATIO_FLOOR};

/// More parts than any real office document has; a directory of millions is an attack.
const MAX_ENTRIES: usize = 20_000;

pub struct GuardedZip<'a> {
    archive: ZipArchive<Cursor<&'a [u8]>>,
    archive_len: u64,
    limits: ParseLimits,
    inflated: u64,
}

impl<'a> GuardedZip<'a> {
    pub fn open(bytes: &'a [u8], limits: &ParseLimits) -> Result<Self, ParseError> {
        let mut archive = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| ParseError::corrupt(format!("unreadable zip container ({e})")))?;
        if archive.len() > MAX_ENTRIES {
            return Err(ParseError::ZipBomb {
                reason: format!("{} entries in the archive", archive.len()),
            });
        }
        let mut declared: u64 = 0;
        for i in 0..archive.len() {
            let entry = archive
                .by_index_raw(i)
                .map_err(|e| ParseError::corrupt(format!("unreadable zip entry ({e})")))?;
            declared = declared.saturating_add(entry.size());
        }
        let guard = GuardedZip {
            archive,
            archive_len: bytes.len() as u64,
            limits: limits.clone(),
            inflated: 0,
        };
        if declared > guard.limits.max_uncompressed_bytes {
            return Err(ParseError::ZipBomb {
                reason: format!(
                    "it declares {} MiB of content, over the {} MiB limit",
                    declared / (1024 * 1024),
                    guard.limits.max_uncompressed_bytes / (1024 * 1024)
                ),
            });
        }
        check_ratio(declared, guard.archive_len, &guard.limits)?;
        Ok(guard)
    }

    #[cfg(test)]
    pub fn set_budget_for_test(&mut self, bytes: u64) {
        self.limits.max_uncompressed_bytes = bytes;
    }

    pub fn names(&self) -> Vec<String> {
        self.archive
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.into_owned())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.archive.index_for_name(name).is_some()
    }

    /// Inflates one part, or `None` if the archive has no such part. Counts against the budget.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, ParseError> {
        let Some(index) = self.archive.index_for_name(name) else {
            return Ok(None);
        };
        let budget = self
            .limits
            .max_uncompressed_bytes
            .saturating_sub(self.inflated);
        let mut file = self
            .archive
            .by_index(index)
            .map_err(|e| ParseError::corrupt(format!("unreadable zip entry {name} ({e})")))?;
        if file.encrypted() {
            return Err(ParseError::Encrypted);
        }
        let mut out = Vec::with_capacity(file.size().min(budget).min(16 << 20) as usize);
        let mut limited = (&mut file).take(budget.saturating_add(1));
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = limited
                .read(&mut buf)
                .map_err(|e| ParseError::corrupt(format!("damaged zip entry {name} ({e})")))?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            let total = self.inflated.saturating_add(out.len() as u64);
            if total > self.limits.max_uncompressed_bytes {
                return Err(ParseError::ZipBomb {
                    reason: format!(
                        "it inflates past the {} MiB limit",
                        self.limits.max_uncompressed_bytes / (1024 * 1024)
                    ),
                });
            }
            check_ratio(total, self.archive_len, &self.limits)?;
        }
        self.inflated = self.inflated.saturating_add(out.len() as u64);
        Ok(Some(out))
    }

    /// Inflates every part once (discarding the bytes), so code that reads the archive on its own
    /// afterwards (calamine) only ever meets sizes already proven to be within limits.
    pub fn verify_all(&mut self) -> Result<(), ParseError> {
        for name in self.names() {
            self.read(&name)?;
        }
        Ok(())
    }

    /// The main part named by the package relationships (`word/document.xml`, `xl/workbook.xml`).
    pub fn main_part(&mut self) -> Result<Option<String>, ParseError> {
        let Some(rels) = self.read("_rels/.rels")? else {
            return Ok(None);
        };
        let rels = String::from_utf8_lossy(&rels);
        Ok(office_document_target(&rels))
    }
}

fn check_ratio(inflated: u64, archive_len: u64, limits: &ParseLimits) -> Result<(), ParseError> {
    let ratio = inflated / archive_len.max(1);
    if inflated > ZIP_RATIO_FLOOR && ratio > limits.max_zip_ratio {
        return Err(ParseError::ZipBomb {
            reason: format!(
                "it inflates {ratio}x, over the {}x limit",
                limits.max_zip_ratio
            ),
        });
    }
    Ok(())
}

/// The `Target` of the relationship whose `Type` ends in `/officeDocument`.
fn office_document_target(rels: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(rels);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e))
                if e.local_name().as_ref() == "Relationship" =>
            {
                let mut kind = None;
                let mut target = None;
                for attr in e.attributes().flatten() {
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .ok()
                        .map(|v| v.into_owned());
                    match attr.key.local_name().as_ref() {
                        "Type" => kind = value,
                        "Target" => target = value,
                        _ => {}
                    }
                }
                if kind.is_some_and(|k| k.ends_with("/officeDocument")) {
                    return target.map(|t| t.trim_start_matches('/').to_string());
                }
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return None,
            _ => {}
        }
    }
}

/// Tells DOCX from XLSX (and from other zips) by the parts inside, without inflating content.
pub fn office_kind(bytes: &[u8]) -> Result<DocumentFormat, ParseError> {
    let archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ParseError::corrupt(format!("unreadable zip container ({e})")))?;
    let has = |name: &str| archive.index_for_name(name).is_some();
    if has("word/document.xml") {
        return Ok(DocumentFormat::Docx);
    }
    if has("xl/workbook.xml") {
        return Ok(DocumentFormat::Xlsx);
    }
    let names: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .collect();
    let under = |dir: &str| names.iter().any(|n| n.starts_with(dir));
    if has("[Content_Types].xml") {
        if under("word/") {
            return Ok(DocumentFormat::Docx);
        }
        if under("xl/") {
            return Ok(DocumentFormat::Xlsx);
        }
        if under("ppt/") {
            return Err(ParseError::unsupported("PowerPoint presentation (.pptx)"));
        }
        return Err(ParseError::unsupported(
            "Office Open XML package of an unknown kind",
        ));
    }
    if has("mimetype") && has("content.xml") {
        return Err(ParseError::unsupported(
            "OpenDocument file: save it as .docx or .xlsx",
        ));
    }
    Err(ParseError::unsupported("zip archive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn office_document_target_is_found() {
        let rels = r#"<?xml version="1.0"?><Relationships xmlns="x"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="/word/document2.xml"/></Relationships>"#;
        assert_eq!(
            office_document_target(rels).as_deref(),
            Some("word/document2.xml")
        );
        assert_eq!(office_document_target("<garbage"), None);
    }
}
