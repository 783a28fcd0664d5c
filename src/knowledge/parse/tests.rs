//! Every format from a real fixture file, every kind of bad input, and hostile input that must
//! never panic. Fixtures live in tests/fixtures/documents (see generate.py there).

use std::io::Write;

use proptest::prelude::*;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/documents/",
            $name
        ))
        .as_slice()
    };
}

fn parse_ok(bytes: &[u8], name: &str) -> ParsedDocument {
    match parse(bytes, name, None, &ParseLimits::default()) {
        Ok(doc) => doc,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn texts(doc: &ParsedDocument) -> Vec<&str> {
    doc.blocks.iter().map(|b| b.text.as_str()).collect()
}

fn all_text(doc: &ParsedDocument) -> String {
    texts(doc).join("\n")
}

fn block<'a>(doc: &'a ParsedDocument, starts_with: &str) -> &'a Block {
    doc.blocks
        .iter()
        .find(|b| b.text.starts_with(starts_with))
        .unwrap_or_else(|| panic!("no block starting {starts_with:?} in {:#?}", texts(doc)))
}

fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

// ---- formats ----

#[test]
fn plain_text_paragraphs_and_lists() {
    let doc = parse_ok(fixture!("house_rules.txt"), "house_rules.txt");
    assert_eq!(doc.format, DocumentFormat::Text);
    assert_eq!(doc.blocks[0].text, "Kopi Senja house rules");
    assert!(block(&doc, "Please keep the noise down").kind == BlockKind::Paragraph);
    let doc = parse_ok(b"Steps:\n1. Order\n2. Pay\n- Enjoy\n", "steps.txt");
    assert_eq!(texts(&doc), vec!["Steps:", "1. Order", "2. Pay", "Enjoy"]);
    assert_eq!(doc.blocks[1].kind, BlockKind::ListItem);
}

#[test]
fn markdown_headings_lists_code_and_tables() {
    let doc = parse_ok(fixture!("faq.md"), "faq.md");
    assert_eq!(doc.format, DocumentFormat::Markdown);
    assert_eq!(doc.title.as_deref(), Some("Kopi Senja FAQ"));
    assert!(!all_text(&doc).contains("front matter"));
    let answer = block(&doc, "Yes. Send us a WhatsApp message");
    assert_eq!(
        answer.heading_path,
        path(&["Kopi Senja FAQ", "Ordering", "Can I order ahead?"])
    );
    assert_eq!(answer.kind, BlockKind::Paragraph);
    let delivery = block(&doc, "We deliver within 5 km");
    assert_eq!(
        delivery.heading_path,
        path(&["Kopi Senja FAQ", "Ordering", "Do you deliver?"])
    );
    let qris = doc
        .blocks
        .iter()
        .find(|b| b.text == "QRIS")
        .expect("list item");
    assert_eq!(qris.kind, BlockKind::ListItem);
    assert_eq!(qris.heading_path, path(&["Kopi Senja FAQ", "Payment"]));
    assert_eq!(block(&doc, "Bank transfer").kind, BlockKind::Code);
    assert_eq!(block(&doc, "Method: QRIS").text, "Method: QRIS; Fee: none");
    assert_eq!(block(&doc, "Method: QRIS").kind, BlockKind::TableRow);
}

#[test]
fn html_in_windows_1252_without_boilerplate() {
    let doc = parse_ok(fixture!("faq_cp1252.html"), "faq.html");
    assert_eq!(doc.format, DocumentFormat::Html);
    assert_eq!(doc.title.as_deref(), Some("FAQ – Kopi Senja"));
    let text = all_text(&doc);
    assert!(
        text.contains("Our café serves “specialty” coffee from Aceh – every day."),
        "{text}"
    );
    for boilerplate in [
        "NAVLINK",
        "FOOTERTEXT",
        "SCRIPTTEXT",
        "STYLETEXT",
        "ASIDETEXT",
        "FORMTEXT",
        "tagline",
    ] {
        assert!(!text.contains(boilerplate), "{boilerplate} leaked: {text}");
    }
    assert_eq!(
        block(&doc, "We accept cash").heading_path,
        path(&["Frequently asked questions", "Payment"])
    );
    assert_eq!(block(&doc, "Cash").kind, BlockKind::ListItem);
    let row = block(&doc, "Drink:");
    assert_eq!(row.text, "Drink: Crème latte; Price: € 3,50");
    assert_eq!(row.kind, BlockKind::TableRow);
}

#[test]
fn html_in_utf16_without_boilerplate() {
    let doc = parse_ok(fixture!("hours_utf16.html"), "hours.html");
    assert_eq!(doc.title.as_deref(), Some("Jam buka"));
    let text = all_text(&doc);
    assert!(text.contains("Kami buka setiap hari pukul 07.00–22.00. Selamat datang ☕."));
    assert!(
        !text.contains("NAVLINK") && !text.contains("FOOTERTEXT"),
        "{text}"
    );
    assert_eq!(
        block(&doc, "Pada hari libur").heading_path,
        path(&["Jam buka", "Hari libur"])
    );
}

#[test]
fn fetched_page_keeps_main_content_only() {
    let page = r#"<html><head><title>Menu</title></head><body>
        <div class="cookie-banner">We use cookies COOKIETEXT</div>
        <div id="site-nav"><a href="/">Home</a> <a href="/a">About</a></div>
        <div class="content"><ul><li><a href="/1">One</a></li><li><a href="/2">Two</a></li>
          <li><a href="/3">Three LINKLIST</a></li></ul>
          <h1>Menu</h1><p>Kopi tubruk costs Rp 18.000.</p></div>
        <div class="sidebar">SIDEBAR</div>
        </body></html>"#;
    let doc = parse_html_page(
        page.as_bytes(),
        Some("text/html; charset=utf-8"),
        &ParseLimits::default(),
    )
    .unwrap();
    let text = all_text(&doc);
    assert!(text.contains("Kopi tubruk costs Rp 18.000."));
    for junk in ["COOKIETEXT", "Home", "LINKLIST", "SIDEBAR"] {
        assert!(!text.contains(junk), "{junk} leaked: {text}");
    }
    let with_main = "<body><p>outside OUTSIDE</p><main><p>inside</p></main></body>";
    let doc = parse_html_page(with_main.as_bytes(), None, &ParseLimits::default()).unwrap();
    assert_eq!(texts(&doc), vec!["inside"]);
    // The transport charset decides when the page itself says nothing.
    let latin = b"<p>Caf\xe9</p>";
    let doc = parse_html_page(
        latin,
        Some("text/html; charset=iso-8859-1"),
        &ParseLimits::default(),
    )
    .unwrap();
    assert_eq!(texts(&doc), vec!["Café"]);
}

#[test]
fn pdf_two_columns_in_reading_order_with_pages() {
    let doc = parse_ok(fixture!("two_column.pdf"), "guide.pdf");
    assert_eq!(doc.format, DocumentFormat::Pdf);
    assert_eq!(doc.title.as_deref(), Some("Kopi Senja outlet guide"));
    let heading = block(&doc, "Outlet guide");
    assert_eq!(heading.kind, BlockKind::Heading);
    assert_eq!(heading.page, Some(1));
    let hours = block(&doc, "Opening hours.");
    assert_eq!(
        hours.text,
        "Opening hours. Kopi Senja Menteng opens every day from 07:00 to 22:00."
    );
    assert_eq!(hours.page, Some(1));
    assert_eq!(hours.heading_path, path(&["Outlet guide"]));
    // The page draws both columns row by row; the left column must still come first.
    let pos = |start: &str| {
        doc.blocks
            .iter()
            .position(|b| b.text.starts_with(start))
            .unwrap_or_else(|| panic!("{start:?} missing: {:#?}", texts(&doc)))
    };
    assert!(pos("Reservations for groups") < pos("Delivery. Orders above"));
    assert!(pos("Delivery. Orders above") < pos("Refunds for late delivery"));
    let allergens = block(&doc, "Allergens.");
    assert_eq!(allergens.page, Some(2));
    assert_eq!(allergens.heading_path, path(&["Members and allergens"]));
    assert!(pos("Points expire") < pos("Allergens."));
}

#[test]
fn pdf_with_only_an_owner_password_is_read() {
    let doc = parse_ok(fixture!("owner_password_only.pdf"), "guide.pdf");
    assert!(all_text(&doc).contains("Kopi Senja Menteng opens every day"));
}

#[test]
fn docx_headings_lists_and_tables() {
    let doc = parse_ok(fixture!("return_policy.docx"), "policy.docx");
    assert_eq!(doc.format, DocumentFormat::Docx);
    assert_eq!(doc.title.as_deref(), Some("Return policy"));
    assert_eq!(block(&doc, "Return policy").kind, BlockKind::Heading);
    let unopened = block(&doc, "Unopened retail coffee");
    assert_eq!(unopened.heading_path, path(&["Return policy"]));
    let refund = block(&doc, "Refunds go back");
    assert_eq!(refund.kind, BlockKind::ListItem);
    assert_eq!(
        refund.heading_path,
        path(&["Return policy", "Refund methods"])
    );
    let row = block(&doc, "Product: Single origin Gayo");
    assert_eq!(
        row.text,
        "Product: Single origin Gayo; Weight: 250 g; Price: Rp 130.000"
    );
    assert_eq!(row.kind, BlockKind::TableRow);
    assert_eq!(row.heading_path, path(&["Return policy", "Retail prices"]));
    assert_eq!(
        block(&doc, "Prices include VAT.").kind,
        BlockKind::Paragraph
    );
}

#[test]
fn xlsx_every_sheet_rows_with_headers() {
    let doc = parse_ok(fixture!("price_list.xlsx"), "prices.xlsx");
    assert_eq!(doc.format, DocumentFormat::Xlsx);
    assert_eq!(doc.title.as_deref(), Some("Price list"));
    let large = block(&doc, "Item: Es Kopi Susu; Size: Large");
    assert_eq!(
        large.text,
        "Item: Es Kopi Susu; Size: Large; Price (IDR): 34000"
    );
    assert_eq!(large.kind, BlockKind::TableRow);
    assert_eq!(large.heading_path, path(&["Drinks"]));
    let bread = block(&doc, "Item: Banana Bread");
    assert_eq!(
        bread.text,
        "Item: Banana Bread; Price (IDR): 27500; Vegetarian: yes"
    );
    assert_eq!(bread.heading_path, path(&["Food"]));
    assert_eq!(doc.blocks.len(), 8);
}

/// The price list with its first sheet's XML replaced.
fn xlsx_with_sheet1(sheet_xml: &str) -> Vec<u8> {
    let mut source =
        zip::ZipArchive::new(std::io::Cursor::new(fixture!("price_list.xlsx"))).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..source.len() {
        let mut entry = source.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        out.start_file(&name, zip::write::SimpleFileOptions::default())
            .unwrap();
        if name == "xl/worksheets/sheet1.xml" {
            out.write_all(sheet_xml.as_bytes()).unwrap();
        } else {
            std::io::copy(&mut entry, &mut out).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn xlsx_sheet_spanning_the_whole_grid_is_read_sparsely() {
    let sheet = r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Opening hours</t></is></c></row><row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>far corner</t></is></c></row></sheetData></worksheet>"#;
    let doc = parse_ok(&xlsx_with_sheet1(sheet), "sparse.xlsx");
    let text = all_text(&doc);
    assert!(
        text.contains("Opening hours") && text.contains("far corner"),
        "{text}"
    );
}

#[test]
fn xlsx_title_rows_above_the_header_become_paragraphs() {
    let cell = |r: &str, t: &str| format!(r#"<c r="{r}" t="inlineStr"><is><t>{t}</t></is></c>"#);
    let sheet = format!(
        r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">{}</row><row r="3">{}{}</row><row r="4">{}<c r="B4"><v>1500</v></c></row></sheetData></worksheet>"#,
        cell("A1", "Price list 2024"),
        cell("A3", "Item"),
        cell("B3", "Price"),
        cell("A4", "Air mineral"),
    );
    let doc = parse_ok(&xlsx_with_sheet1(&sheet), "titled.xlsx");
    assert_eq!(doc.blocks[0].text, "Price list 2024");
    assert_eq!(doc.blocks[0].kind, BlockKind::Paragraph);
    assert_eq!(doc.blocks[1].text, "Item: Air mineral; Price: 1500");
}

#[test]
fn csv_semicolons_in_windows_1252() {
    let doc = parse_ok(fixture!("prices_cp1252.csv"), "preise.csv");
    assert_eq!(doc.format, DocumentFormat::Csv);
    assert_eq!(
        texts(&doc),
        vec![
            "Produkt: Café crème; Größe: Normal; Preis: 3,50 €; Beschreibung: Kaffee mit Milchschaum",
            "Produkt: Crème brûlée; Größe: Stück; Preis: 4,20 €; Beschreibung: Dessert; hausgemacht",
            "Produkt: Tee; Größe: Kanne; Preis: 2,80 €; Beschreibung: Schwarzer Tee – Assam",
        ]
    );
    let tsv = parse_ok(b"name\tprice\nlatte\t30000\n", "x.tsv");
    assert_eq!(texts(&tsv), vec!["name: latte; price: 30000"]);
    let piped = parse_ok(b"a|b\n1|2\n3|4\n", "x.csv");
    assert_eq!(texts(&piped), vec!["a: 1; b: 2", "a: 3; b: 4"]);
}

// ---- bad input ----

#[test]
fn encrypted_pdf_is_refused_as_encrypted() {
    let err = parse(
        fixture!("encrypted.pdf"),
        "secret.pdf",
        None,
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err, ParseError::Encrypted);
    assert_eq!(err.code(), "encrypted");
}

#[test]
fn scanned_pdf_has_no_extractable_text() {
    let err = parse(
        fixture!("scanned.pdf"),
        "scan.pdf",
        None,
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err, ParseError::NoExtractableText);
    assert_eq!(
        err.to_string(),
        "no extractable text (is this a scanned PDF?)"
    );
}

#[test]
fn corrupt_pdf_is_refused_as_corrupt() {
    let err = parse(
        fixture!("corrupt.pdf"),
        "broken.pdf",
        None,
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "corrupt", "{err}");
    let err = parse(
        b"hello, not a pdf",
        "fake.pdf",
        None,
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "corrupt");
}

#[test]
fn unsupported_types_are_named() {
    let err = parse(
        fixture!("image.png"),
        "photo.png",
        None,
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        ParseError::Unsupported {
            what: "PNG image".into()
        }
    );
    // Magic bytes beat a misleading name.
    let err = parse(
        fixture!("image.png"),
        "menu.pdf",
        None,
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsupported");
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
    exe.extend_from_slice(&[0u8; 64]);
    let err = parse(&exe, "setup.exe", None, &ParseLimits::default()).unwrap_err();
    assert_eq!(
        err,
        ParseError::Unsupported {
            what: "Windows executable".into()
        }
    );
    let err = parse(
        &[0u8, 1, 2, 3, 0, 0, 9, 200],
        "blob.bin",
        None,
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "unsupported");
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("notes.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"hello").unwrap();
    let zip = zip.finish().unwrap().into_inner();
    let err = parse(&zip, "notes.zip", None, &ParseLimits::default()).unwrap_err();
    assert_eq!(
        err,
        ParseError::Unsupported {
            what: "zip archive".into()
        }
    );
}

#[test]
fn files_over_the_size_limit_are_refused_before_parsing() {
    let limits = ParseLimits {
        max_bytes: 1024,
        ..ParseLimits::default()
    };
    let err = parse(&[b'a'; 1025], "big.txt", None, &limits).unwrap_err();
    assert_eq!(err, ParseError::TooLarge { limit: 1024 });
    assert_eq!(err.code(), "too_large");
    assert!(parse(&[b'a'; 1024], "ok.txt", None, &limits).is_ok());
    let err = parse_html_page(&[b'a'; 2000], None, &limits).unwrap_err();
    assert_eq!(err.code(), "too_large");
    assert_eq!(
        ParseError::TooLarge {
            limit: 20 * 1024 * 1024
        }
        .to_string(),
        "file is too large (the limit is 20 MiB)"
    );
}

#[test]
fn empty_documents_are_refused() {
    let limits = ParseLimits::default();
    assert_eq!(
        parse(b"", "a.txt", None, &limits).unwrap_err(),
        ParseError::Empty
    );
    assert_eq!(
        parse(b"  \n\n\t ", "a.txt", None, &limits).unwrap_err(),
        ParseError::Empty
    );
    assert_eq!(
        parse(b"<html><nav>only nav</nav></html>", "a.html", None, &limits).unwrap_err(),
        ParseError::Empty
    );
}

/// A zip whose one entry is `size` zero bytes, compressed as well as deflate can.
fn zeros_zip(entry: &str, size: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(size > u32::MAX as usize);
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(b"<Types/>").unwrap();
    zip.start_file(entry, options).unwrap();
    let block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len());
        zip.write_all(&block[..n]).unwrap();
        left -= n;
    }
    zip.finish().unwrap().into_inner()
}

/// Rewrites every declared uncompressed size of `entry` (local header and central directory).
fn lie_about_size(zip: &mut [u8], entry: &str, size: u32) {
    let name = entry.as_bytes();
    let mut i = 0;
    while i + 46 < zip.len() {
        let sig = &zip[i..i + 4];
        if sig == b"PK\x03\x04" {
            let name_len = u16::from_le_bytes([zip[i + 26], zip[i + 27]]) as usize;
            if zip.get(i + 30..i + 30 + name_len) == Some(name) {
                zip[i + 22..i + 26].copy_from_slice(&size.to_le_bytes());
            }
        } else if sig == b"PK\x01\x02" {
            let name_len = u16::from_le_bytes([zip[i + 28], zip[i + 29]]) as usize;
            if zip.get(i + 46..i + 46 + name_len) == Some(name) {
                zip[i + 24..i + 28].copy_from_slice(&size.to_le_bytes());
            }
        }
        i += 1;
    }
}

#[test]
fn zip_bomb_disguised_as_docx_is_refused_by_ratio() {
    // 8 MiB of zeros deflate to about 8 KiB: a 1000x ratio.
    let bomb = zeros_zip("word/document.xml", 8 << 20);
    assert!(bomb.len() < 64 * 1024);
    let err = parse(&bomb, "invoice.docx", None, &ParseLimits::default()).unwrap_err();
    assert!(matches!(err, ParseError::ZipBomb { .. }), "{err}");
    assert_eq!(err.code(), "zip_bomb");
}

#[test]
fn zip_bomb_disguised_as_xlsx_is_refused_by_declared_size() {
    let bomb = zeros_zip("xl/workbook.xml", 2 << 20);
    let limits = ParseLimits {
        max_uncompressed_bytes: 1 << 20,
        ..ParseLimits::default()
    };
    let err = parse(&bomb, "prices.xlsx", None, &limits).unwrap_err();
    assert!(
        matches!(&err, ParseError::ZipBomb { reason } if reason.contains("declares")),
        "{err}"
    );
}

#[test]
fn zip_bomb_that_lies_about_its_size_stops_inflating() {
    let mut bomb = zeros_zip("word/document.xml", 8 << 20);
    lie_about_size(&mut bomb, "word/document.xml", 1000);
    let limits = ParseLimits {
        max_uncompressed_bytes: 1 << 20,
        ..ParseLimits::default()
    };
    let err = parse(&bomb, "invoice.docx", None, &limits).unwrap_err();
    assert!(matches!(err.code(), "zip_bomb" | "corrupt"), "{err}");
}

#[test]
fn streaming_guard_stops_at_the_budget_even_when_sizes_look_fine() {
    let zip = zeros_zip("word/document.xml", 1 << 20);
    let mut guard = zipguard::GuardedZip::open(&zip, &ParseLimits::default()).unwrap();
    guard.set_budget_for_test(64 * 1024);
    let err = guard.read("word/document.xml").unwrap_err();
    assert!(matches!(err, ParseError::ZipBomb { .. }), "{err}");
}

#[test]
fn password_protected_office_file_is_encrypted() {
    let mut ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1".to_vec();
    ole.extend_from_slice(&[0u8; 100]);
    ole.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
    ole.extend_from_slice(&[0u8; 100]);
    assert_eq!(
        parse(&ole, "secret.docx", None, &ParseLimits::default()).unwrap_err(),
        ParseError::Encrypted
    );
}

#[test]
fn pdf_whose_form_draws_itself_is_refused_not_a_stack_overflow() {
    use pdf_extract::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let form_id = doc.new_object_id();
    // The form has no resources of its own, so it borrows the page's, where /X is itself.
    doc.objects.insert(
        form_id,
        Object::Stream(Stream::new(
            dictionary! { "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 10.into(), 10.into()] },
            b"/X Do".to_vec(),
        )),
    );
    let content_id = doc.add_object(Stream::new(dictionary! {}, b"/X Do".to_vec()));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "MediaBox" => vec![0.into(), 0.into(), 100.into(), 100.into()],
        "Contents" => content_id,
        "Resources" => dictionary! { "XObject" => dictionary! { "X" => form_id } },
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 },
        ),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    let err = parse(&bytes, "loop.pdf", None, &ParseLimits::default()).unwrap_err();
    assert_eq!(err.code(), "corrupt", "{err}");
}

#[test]
fn deeply_nested_markup_is_read_or_refused_quickly() {
    let nest = |depth: usize| {
        format!(
            "{}deep text{}",
            "<div>".repeat(depth),
            "</div>".repeat(depth)
        )
    };
    let doc = parse_ok(nest(3000).as_bytes(), "deep.html");
    assert_eq!(texts(&doc), vec!["deep text"]);
    let err = parse(
        nest(200_000).as_bytes(),
        "deep.html",
        None,
        &ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "corrupt");
    // Elements the parser closes by itself do not count as nesting.
    let flat = "<p>para".repeat(20_000) + &"<li>item".repeat(20_000) + "<br><img src=x>";
    assert!(parse(flat.as_bytes(), "flat.html", None, &ParseLimits::default()).is_ok());
    let md = format!("{}quoted", "> ".repeat(5_000));
    let doc = parse_ok(md.as_bytes(), "deep.md");
    assert!(all_text(&doc).contains("quoted"));
}

// ---- detection ----

#[test]
fn detection_prefers_magic_then_extension_then_mime_then_content() {
    let docx = fixture!("return_policy.docx");
    assert_eq!(
        detect_format(docx, "renamed.txt", None),
        Ok(DocumentFormat::Docx)
    );
    let xlsx = fixture!("price_list.xlsx");
    assert_eq!(
        detect_format(xlsx, "download", None),
        Ok(DocumentFormat::Xlsx)
    );
    let pdf = fixture!("two_column.pdf");
    assert_eq!(detect_format(pdf, "x", None), Ok(DocumentFormat::Pdf));
    assert_eq!(
        detect_format(b"a,b", "x.CSV", None),
        Ok(DocumentFormat::Csv)
    );
    assert_eq!(
        detect_format(b"# T", "README.md", None),
        Ok(DocumentFormat::Markdown)
    );
    assert_eq!(
        detect_format(b"a;b", "upload", Some("text/csv; charset=utf-8")),
        Ok(DocumentFormat::Csv)
    );
    assert_eq!(
        detect_format(b"<!DOCTYPE html><p>x", "page", None),
        Ok(DocumentFormat::Html)
    );
    assert_eq!(
        detect_format(b"just words", "notes", None),
        Ok(DocumentFormat::Text)
    );
    assert_eq!(
        detect_format(fixture!("hours_utf16.html"), "noext", None),
        Ok(DocumentFormat::Html)
    );
    assert_eq!(detect_format(b"", "a.txt", None), Err(ParseError::Empty));
}

#[test]
fn error_codes_are_stable_and_distinct() {
    let errors = [
        ParseError::Unsupported { what: "x".into() },
        ParseError::TooLarge { limit: 1 },
        ParseError::Corrupt { reason: "x".into() },
        ParseError::Encrypted,
        ParseError::NoExtractableText,
        ParseError::ZipBomb { reason: "x".into() },
        ParseError::Empty,
    ];
    let codes: Vec<&str> = errors.iter().map(ParseError::code).collect();
    assert_eq!(
        codes,
        vec![
            "unsupported",
            "too_large",
            "corrupt",
            "encrypted",
            "no_extractable_text",
            "zip_bomb",
            "empty"
        ]
    );
}

// ---- hostile input never panics ----

const FIXTURES: &[(&str, &[u8])] = &[
    ("two_column.pdf", fixture!("two_column.pdf")),
    ("return_policy.docx", fixture!("return_policy.docx")),
    ("price_list.xlsx", fixture!("price_list.xlsx")),
    ("faq_cp1252.html", fixture!("faq_cp1252.html")),
    ("hours_utf16.html", fixture!("hours_utf16.html")),
    ("faq.md", fixture!("faq.md")),
    ("prices_cp1252.csv", fixture!("prices_cp1252.csv")),
    ("house_rules.txt", fixture!("house_rules.txt")),
];

const NAMES: &[&str] = &[
    "a.pdf", "a.docx", "a.xlsx", "a.html", "a.md", "a.csv", "a.txt", "a",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), name in 0..NAMES.len()) {
        let _ = parse(&bytes, NAMES[name], None, &ParseLimits::default());
        let _ = parse_html_page(&bytes, None, &ParseLimits::default());
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (name, original) = FIXTURES[which];
        let mut bytes = original.to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = parse(&bytes, name, None, &ParseLimits::default());
    }
}
