//! TEMPORARY stand-in for the real chunker (branch `kb-parse`): counts whitespace words as
//! tokens. Same interface as the real one; deleted when `kb-parse` is merged.

use super::parse::{BlockKind, ParsedDocument};

#[derive(Debug, Clone)]
pub struct ChunkConfig {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            max_tokens: 500,
            overlap_tokens: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub ordinal: u32,
    pub text: String,
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
    pub token_count: usize,
}

pub fn chunk(doc: &ParsedDocument, config: &ChunkConfig) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    let mut current = String::new();
    let mut tokens = 0usize;
    let mut path: Vec<String> = Vec::new();
    let mut page = None;
    let flush = |out: &mut Vec<Chunk>, current: &mut String, tokens: &mut usize, path: &[String], page| {
        if !current.trim().is_empty() {
            out.push(Chunk {
                ordinal: out.len() as u32,
                text: std::mem::take(current),
                heading_path: path.to_vec(),
                page,
                token_count: *tokens,
            });
        }
        current.clear();
        *tokens = 0;
    };
    for block in &doc.blocks {
        let n = block.text.split_whitespace().count();
        if block.kind == BlockKind::Heading || block.heading_path != path {
            flush(&mut out, &mut current, &mut tokens, &path, page);
            path = block.heading_path.clone();
            page = block.page;
        }
        if tokens + n > config.max_tokens.max(1) {
            flush(&mut out, &mut current, &mut tokens, &path, page);
            page = block.page;
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(&block.text);
        tokens += n;
    }
    flush(&mut out, &mut current, &mut tokens, &path, page);
    out
}
