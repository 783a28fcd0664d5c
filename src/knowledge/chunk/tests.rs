//! Chunk sizes, overlap, cut points, and metadata, on fixed documents and random text.

use proptest::prelude::*;

use super::*;
use crate::knowledge::parse::{parse, Block, DocumentFormat, ParseLimits};

fn doc(blocks: Vec<Block>) -> ParsedDocument {
    ParsedDocument {
        format: DocumentFormat::Text,
        title: None,
        blocks,
    }
}

fn block(text: &str, path: &[&str], page: Option<u32>, kind: BlockKind) -> Block {
    Block {
        text: text.to_string(),
        heading_path: path.iter().map(|p| p.to_string()).collect(),
        page,
        kind,
    }
}

fn para(text: &str) -> Block {
    block(text, &[], None, BlockKind::Paragraph)
}

/// Prose of `sentences` sentences made of numbered, distinct words.
fn prose(sentences: usize, tag: &str) -> String {
    (0..sentences)
        .map(|s| {
            let words: Vec<String> = (0..12).map(|w| format!("{tag}word{s}x{w}")).collect();
            format!("{}.", words.join(" "))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Checks the invariants every chunking must hold and returns the chunks.
fn check(doc: &ParsedDocument, config: &ChunkConfig) -> Vec<(Chunk, usize)> {
    let chunks = chunk_with_overlap(doc, config);
    let max = config.max_tokens.max(1);
    let mut bodies = String::new();
    for (i, (c, overlap_len)) in chunks.iter().enumerate() {
        assert_eq!(c.ordinal as usize, i);
        assert!(
            c.token_count <= max,
            "chunk {i} has {} tokens > {max}",
            c.token_count
        );
        assert_eq!(c.token_count, count_tokens(&c.text));
        if *overlap_len > 0 {
            let overlap = &c.text[..*overlap_len];
            let previous = &chunks[i - 1].0.text;
            assert!(
                previous.ends_with(overlap),
                "overlap {overlap:?} is not the end of {previous:?}"
            );
            assert!(count_tokens(overlap) <= config.overlap_tokens);
        }
        bodies.push_str(&c.text[*overlap_len..]);
    }
    let source: String = doc.blocks.iter().map(|b| b.text.as_str()).collect();
    assert_eq!(
        squeeze(&bodies),
        squeeze(&source),
        "chunks do not cover the text exactly once"
    );
    chunks
}

#[test]
fn token_counts_match_cl100k_base() {
    assert_eq!(count_tokens(""), 0);
    assert_eq!(count_tokens("hello world"), 2);
    assert_eq!(count_tokens("tiktoken is great!"), 6);
    // Special-token text is counted as ordinary text, not rejected.
    assert!(count_tokens("<|endoftext|>") > 1);
}

#[test]
fn defaults_are_500_and_50() {
    assert_eq!(
        ChunkConfig::default(),
        ChunkConfig {
            max_tokens: 500,
            overlap_tokens: 50
        }
    );
}

#[test]
fn a_short_document_is_one_chunk() {
    let d = doc(vec![
        para("Opening hours are 7 to 22."),
        para("Parking is free."),
    ]);
    let chunks = check(&d, &ChunkConfig::default());
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        chunks[0].0.text,
        "Opening hours are 7 to 22.\n\nParking is free."
    );
}

#[test]
fn long_text_is_cut_at_sentences_with_overlap() {
    let text = prose(120, "");
    let d = doc(vec![para(&text)]);
    let config = ChunkConfig::default();
    let chunks = check(&d, &config);
    assert!(chunks.len() > 3, "{}", chunks.len());
    for (i, (c, overlap_len)) in chunks.iter().enumerate() {
        let body = c.text[*overlap_len..].trim();
        assert!(
            body.ends_with('.'),
            "chunk {i} body does not end at a sentence: {body:?}"
        );
        if i + 1 < chunks.len() {
            assert!(
                c.token_count > config.max_tokens / 2,
                "chunk {i} is needlessly small"
            );
        }
        if i > 0 {
            assert!(*overlap_len > 0, "chunk {i} has no overlap");
            assert!(count_tokens(&c.text[..*overlap_len]) >= config.overlap_tokens - 10);
        }
    }
}

#[test]
fn no_cut_falls_inside_a_word() {
    // One endless sentence forces word-level cuts.
    let words: Vec<String> = (0..2000).map(|i| format!("kata{i}")).collect();
    let d = doc(vec![para(&words.join(" "))]);
    let chunks = check(
        &d,
        &ChunkConfig {
            max_tokens: 120,
            overlap_tokens: 20,
        },
    );
    let vocabulary: std::collections::HashSet<&str> = words.iter().map(String::as_str).collect();
    for (c, _) in &chunks {
        for w in c.text.split_whitespace() {
            assert!(vocabulary.contains(w), "{w:?} is a cut word");
        }
    }
}

#[test]
fn a_word_longer_than_a_chunk_is_the_only_thing_cut_inside() {
    let blob = "ab1".repeat(3000);
    let d = doc(vec![para(&format!("hash {blob} end"))]);
    let chunks = check(
        &d,
        &ChunkConfig {
            max_tokens: 100,
            overlap_tokens: 10,
        },
    );
    assert!(chunks.len() > 5);
}

#[test]
fn headings_start_new_chunks_and_paths_are_kept() {
    let d = doc(vec![
        block("FAQ", &["FAQ"], None, BlockKind::Heading),
        block("Ordering", &["FAQ", "Ordering"], None, BlockKind::Heading),
        block(
            "Order by WhatsApp.",
            &["FAQ", "Ordering"],
            None,
            BlockKind::Paragraph,
        ),
        block("Payment", &["FAQ", "Payment"], None, BlockKind::Heading),
        block(
            "We take QRIS.",
            &["FAQ", "Payment"],
            None,
            BlockKind::Paragraph,
        ),
    ]);
    let chunks = check(&d, &ChunkConfig::default());
    let got: Vec<(&str, Vec<String>)> = chunks
        .iter()
        .map(|(c, _)| (c.text.as_str(), c.heading_path.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "FAQ\n\nOrdering\n\nOrder by WhatsApp.",
                vec!["FAQ".to_string(), "Ordering".to_string()]
            ),
            (
                "Payment\n\nWe take QRIS.",
                vec!["FAQ".to_string(), "Payment".to_string()]
            ),
        ]
    );
}

#[test]
fn pages_are_kept_and_a_section_continuing_on_the_next_page_overlaps() {
    let d = doc(vec![
        block(&prose(30, "a"), &[], Some(1), BlockKind::Paragraph),
        block(&prose(30, "b"), &[], Some(2), BlockKind::Paragraph),
    ]);
    let chunks = check(&d, &ChunkConfig::default());
    let first_of_page_2 = chunks
        .iter()
        .position(|(c, _)| c.page == Some(2))
        .expect("a chunk on page 2");
    assert!(chunks[..first_of_page_2]
        .iter()
        .all(|(c, _)| c.page == Some(1)));
    let (c, overlap) = &chunks[first_of_page_2];
    assert!(*overlap > 0, "continuation across a page keeps its overlap");
    assert!(c.text[*overlap..].trim_start().starts_with("bword0x0"));
}

#[test]
fn table_rows_stay_whole_and_carry_their_headers() {
    let rows: Vec<Block> = (0..200)
        .map(|i| {
            block(
                &format!(
                    "Item: Menu item number {i}; Size: Regular; Price (IDR): {}",
                    20_000 + i * 500
                ),
                &["Drinks"],
                None,
                BlockKind::TableRow,
            )
        })
        .collect();
    let d = doc(rows.clone());
    let chunks = check(
        &d,
        &ChunkConfig {
            max_tokens: 120,
            overlap_tokens: 30,
        },
    );
    assert!(chunks.len() > 10);
    let whole: std::collections::HashSet<&str> = rows.iter().map(|b| b.text.as_str()).collect();
    for (c, overlap) in &chunks {
        assert_eq!(*overlap, 0, "rows carry no overlap");
        assert_eq!(c.heading_path, vec!["Drinks".to_string()]);
        for line in c.text.lines() {
            assert!(whole.contains(line), "{line:?} is not a whole row");
        }
    }
}

#[test]
fn a_price_list_row_is_retrievable_from_its_chunk() {
    let bytes = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/documents/price_list.xlsx"
    ));
    let parsed = parse(bytes, "prices.xlsx", None, &ParseLimits::default()).unwrap();
    let chunks = chunk(&parsed, &ChunkConfig::default());
    let hit = chunks
        .iter()
        .find(|c| {
            c.text
                .lines()
                .any(|l| l == "Item: Es Kopi Susu; Size: Large; Price (IDR): 34000")
        })
        .expect("the row is one line of a chunk");
    assert_eq!(hit.heading_path, vec!["Drinks".to_string()]);
}

#[test]
fn every_fixture_chunks_within_bounds() {
    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/documents/",
                    $name
                ))
                .as_slice(),
            )
        };
    }
    for (name, bytes) in [
        fixture!("two_column.pdf"),
        fixture!("return_policy.docx"),
        fixture!("faq.md"),
        fixture!("faq_cp1252.html"),
        fixture!("hours_utf16.html"),
        fixture!("prices_cp1252.csv"),
        fixture!("house_rules.txt"),
    ] {
        let parsed = parse(bytes, name, None, &ParseLimits::default()).unwrap();
        for config in [
            ChunkConfig::default(),
            ChunkConfig {
                max_tokens: 24,
                overlap_tokens: 6,
            },
        ] {
            let chunks = check(&parsed, &config);
            assert!(!chunks.is_empty(), "{name}");
        }
    }
    let pdf = parse(
        fixture!("two_column.pdf").1,
        "x.pdf",
        None,
        &ParseLimits::default(),
    )
    .unwrap();
    let chunks = chunk(&pdf, &ChunkConfig::default());
    assert!(chunks
        .iter()
        .any(|c| c.page == Some(2) && c.heading_path == vec!["Members and allergens".to_string()]));
}

#[test]
fn silly_configs_still_terminate_within_bounds() {
    let d = doc(vec![para(&prose(5, "z"))]);
    for (max_tokens, overlap_tokens) in [(0, 0), (1, 0), (1, 5), (3, 3), (10, 100)] {
        check(
            &d,
            &ChunkConfig {
                max_tokens,
                overlap_tokens,
            },
        );
    }
}

fn kind_strategy() -> impl Strategy<Value = BlockKind> {
    prop_oneof![
        Just(BlockKind::Paragraph),
        Just(BlockKind::Paragraph),
        Just(BlockKind::Heading),
        Just(BlockKind::ListItem),
        Just(BlockKind::TableRow),
        Just(BlockKind::Code),
    ]
}

fn text_strategy() -> impl Strategy<Value = String> {
    // Words, punctuation, non-Latin scripts, emoji and long runs, in random order.
    let token = prop_oneof![
        "[a-zA-Z]{1,12}",
        "[0-9]{1,8}",
        Just(".".to_string()),
        Just("!".to_string()),
        Just("Rp 25.000,-".to_string()),
        Just("kopi susu".to_string()),
        Just("日本語のテキスト".to_string()),
        Just("😀☕".to_string()),
        "[a-z]{40,200}",
        Just("\n".to_string()),
    ];
    proptest::collection::vec(token, 0..400).prop_map(|parts| parts.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_text_chunks_fit_and_cover_the_text(
        blocks in proptest::collection::vec((text_strategy(), kind_strategy(), 0u8..3, proptest::option::of(1u32..4)), 1..6),
        max_tokens in 8usize..300,
        overlap_tokens in 0usize..80,
    ) {
        let blocks = blocks
            .into_iter()
            .map(|(text, kind, depth, page)| {
                let path: Vec<String> = (0..depth).map(|d| format!("H{d}")).collect();
                Block { text, heading_path: path, page, kind }
            })
            .collect();
        let d = doc(blocks);
        check(&d, &ChunkConfig { max_tokens, overlap_tokens });
    }
}
