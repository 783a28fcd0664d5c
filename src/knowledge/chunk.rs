//! Chunking: a parsed document into retrieval-sized passages.
//!
//! Sizes are counted in cl100k_base tokens (tiktoken-rs embeds the ranks, so nothing is fetched).
//! A heading change always starts a new chunk, as does a page change; within a section blocks are
//! packed whole, and only a block too long for a chunk is cut: at sentence ends, then between
//! words, and (for a single "word" longer than a chunk, such as a pasted hash) between characters.
//! Consecutive chunks of one section share up to `overlap_tokens` of text, starting at a word.
//! Table rows are never cut (unless one row alone exceeds the chunk size) and carry no overlap:
//! each row already names its columns (`Item: …; Price: …`), so a chunk of rows needs no header
//! repeated to answer "how much is X".
//!
//! `Chunk::text` holds the passage itself; the section's heading appears in the text of the
//! section's first chunk only, and `heading_path` carries it for every chunk (callers that embed
//! chunks may prefix it).

use crate::knowledge::parse::{BlockKind, ParsedDocument};

/// Chunk size and overlap, in cl100k_base tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkConfig {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_tokens: 500,
            overlap_tokens: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position of the chunk in its document, from 0.
    pub ordinal: u32,
    pub text: String,
    pub heading_path: Vec<String>,
    /// Page of the chunk's first (non-overlap) text, for paginated documents.
    pub page: Option<u32>,
    pub token_count: usize,
}

/// Number of cl100k_base tokens in `text` (special tokens are counted as plain text).
pub fn count_tokens(text: &str) -> usize {
    tiktoken_rs::cl100k_base_singleton().count_ordinary(text)
}

pub fn chunk(doc: &ParsedDocument, config: &ChunkConfig) -> Vec<Chunk> {
    chunk_with_overlap(doc, config)
        .into_iter()
        .map(|(chunk, _)| chunk)
        .collect()
}

/// A piece of a block small enough to go into a chunk whole.
#[derive(Debug)]
struct Piece {
    text: String,
    /// Joins this piece to the previous one in the same chunk.
    sep: &'static str,
    tokens: usize,
    page: Option<u32>,
    kind: BlockKind,
}

#[derive(Debug)]
struct Section {
    heading_path: Vec<String>,
    page: Option<u32>,
    pieces: Vec<Piece>,
    /// Continues the previous section's text (same headings, next page): overlap carries over.
    continues: bool,
}

/// The chunks, each with the byte length of its leading overlap text (for tests of coverage).
pub(crate) fn chunk_with_overlap(
    doc: &ParsedDocument,
    config: &ChunkConfig,
) -> Vec<(Chunk, usize)> {
    let max = config.max_tokens.max(1);
    let overlap = config.overlap_tokens.min(max / 2);
    let sections = sections(doc, max, overlap);
    let mut out: Vec<(Chunk, usize)> = Vec::new();
    let mut previous_text: Option<String> = None;
    for section in sections {
        if !section.continues {
            previous_text = None;
        }
        let mut packer = Packer {
            max,
            overlap,
            section: &section,
            out: &mut out,
        };
        previous_text = packer.pack(previous_text);
    }
    for (i, (chunk, _)) in out.iter_mut().enumerate() {
        chunk.ordinal = u32::try_from(i).unwrap_or(u32::MAX);
    }
    out
}

fn sections(doc: &ParsedDocument, max: usize, overlap: usize) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for block in &doc.blocks {
        let text = block.text.trim();
        if text.is_empty() {
            continue;
        }
        let (new_section, continues) = match sections.last() {
            None => (true, false),
            // A heading with nothing under it yet (a chapter heading followed by a section
            // heading) travels with what follows it.
            Some(s) if s.pieces.iter().all(|p| p.kind == BlockKind::Heading) => (false, false),
            Some(_) if block.kind == BlockKind::Heading => (true, false),
            Some(s) if s.heading_path != block.heading_path => (true, false),
            Some(s) if s.page != block.page => (true, true),
            Some(_) => (false, false),
        };
        if new_section {
            sections.push(Section {
                heading_path: block.heading_path.clone(),
                page: block.page,
                pieces: Vec::new(),
                continues,
            });
        } else if let Some(s) = sections.last_mut() {
            s.heading_path = block.heading_path.clone();
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        let first_sep = match (section.pieces.last().map(|p| p.kind), block.kind) {
            (Some(a), b) if a == b && matches!(b, BlockKind::ListItem | BlockKind::TableRow) => {
                "\n"
            }
            _ => "\n\n",
        };
        let budget = if block.kind == BlockKind::TableRow {
            max
        } else {
            max - overlap
        };
        for (i, (piece, sep, tokens)) in split_block(text, block.kind, budget)
            .into_iter()
            .enumerate()
        {
            section.pieces.push(Piece {
                text: piece,
                sep: if i == 0 { first_sep } else { sep },
                tokens,
                page: block.page,
                kind: block.kind,
            });
        }
    }
    sections.retain(|s| !s.pieces.is_empty());
    sections
}

/// Cuts a block into pieces of at most `budget` tokens, each with the separator that joins it
/// to the piece before and its token count.
fn split_block(text: &str, kind: BlockKind, budget: usize) -> Vec<(String, &'static str, usize)> {
    let whole = count_tokens(text);
    if whole <= budget {
        return vec![(text.to_string(), "", whole)];
    }
    let (units, sep): (Vec<&str>, &'static str) = if kind == BlockKind::Code {
        (
            text.lines().filter(|l| !l.trim().is_empty()).collect(),
            "\n",
        )
    } else {
        (sentences(text), " ")
    };
    let mut out = Vec::new();
    for unit in units {
        let tokens = count_tokens(unit);
        if tokens <= budget {
            out.push((unit.to_string(), sep, tokens));
        } else {
            for (i, group) in word_groups(unit, budget).into_iter().enumerate() {
                let tokens = count_tokens(&group);
                out.push((group, if i == 0 { sep } else { " " }, tokens));
            }
        }
    }
    out
}

/// Splits prose after sentence-ending punctuation followed by whitespace.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut after_terminator = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if after_terminator {
                let s = text[start..i].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = i;
            }
            after_terminator = false;
        } else if matches!(c, '.' | '!' | '?' | '。' | '！' | '？' | '…' | ';') {
            after_terminator = true;
        } else if !matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '»') {
            after_terminator = false;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Packs words into groups of at most `budget` tokens; a word longer than that is cut between
/// characters, the only place a chunk boundary falls inside a word.
fn word_groups(text: &str, budget: usize) -> Vec<String> {
    let mut groups = Vec::new();
    let mut current = String::new();
    let mut current_tokens = 0;
    for word in text.split_whitespace() {
        let word_tokens = count_tokens(word);
        if word_tokens > budget {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
                current_tokens = 0;
            }
            groups.extend(char_groups(word, budget));
            continue;
        }
        // " word" usually costs what "word" costs; the candidate is re-counted when close.
        if !current.is_empty() && current_tokens + word_tokens + 1 > budget {
            let candidate = format!("{current} {word}");
            let exact = count_tokens(&candidate);
            if exact <= budget {
                current = candidate;
                current_tokens = exact;
                continue;
            }
            groups.push(std::mem::take(&mut current));
            current_tokens = 0;
        }
        if !current.is_empty() {
            current.push(' ');
            current_tokens += 1;
        }
        current.push_str(word);
        current_tokens += word_tokens;
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn char_groups(word: &str, budget: usize) -> Vec<String> {
    // Token end offsets from one encoding of the whole word, so cutting costs one count per group.
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let mut ends = Vec::new();
    let mut pos = 0;
    for token in bpe.encode_ordinary(word) {
        pos += bpe.decode_bytes(&[token]).map_or(0, |b| b.len());
        ends.push(pos);
    }
    let mut groups = Vec::new();
    let mut start = 0;
    let mut first_token = 0;
    while start < word.len() {
        let rest = &word[start..];
        let mut cut = ends
            .get(first_token + budget.max(1) - 1)
            .map_or(word.len(), |&end| end.min(word.len()));
        while !word.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut <= start || count_tokens(&word[start..cut]) > budget {
            cut = start + longest_prefix_within(rest, budget);
        }
        groups.push(word[start..cut].to_string());
        start = cut;
        while first_token < ends.len() && ends[first_token] <= start {
            first_token += 1;
        }
    }
    groups
}

/// Byte length of the longest prefix of `text` (at a char boundary, at least one char) that
/// counts at most `budget` tokens; found by doubling then bisection, so a megabyte-long "word"
/// costs a few dozen counts rather than one per character.
fn longest_prefix_within(text: &str, budget: usize) -> usize {
    let boundary = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let first = text.chars().next().map_or(0, char::len_utf8);
    let fits = |i: usize| count_tokens(&text[..i]) <= budget;
    let mut good = first;
    let mut probe = boundary(budget.max(1) * 4).max(first);
    while probe < text.len() && fits(probe) {
        good = probe;
        probe = boundary(probe * 2);
    }
    if probe >= text.len() && fits(text.len()) {
        return text.len();
    }
    let mut bad = probe.max(good + 1);
    // Invariant: prefix `good` fits (or is the one-char minimum), prefix `bad` does not.
    while bad - good > 1 {
        let mid = boundary(good + (bad - good) / 2);
        if mid <= good {
            // No char boundary strictly between: step to the next one.
            let next = good + text[good..].chars().next().map_or(1, char::len_utf8);
            if next >= bad {
                break;
            }
            if fits(next) {
                good = next;
            } else {
                break;
            }
            continue;
        }
        if fits(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

struct Packer<'a> {
    max: usize,
    overlap: usize,
    section: &'a Section,
    out: &'a mut Vec<(Chunk, usize)>,
}

impl Packer<'_> {
    /// Packs the section's pieces; returns the last chunk's text (overlap source for a
    /// continuing section).
    fn pack(&mut self, mut previous: Option<String>) -> Option<String> {
        let pieces = &self.section.pieces;
        let mut start = 0;
        while start < pieces.len() {
            let carry = if pieces[start].kind == BlockKind::TableRow {
                String::new()
            } else {
                previous
                    .as_deref()
                    .map(|p| tail_words(p, self.overlap))
                    .unwrap_or_default()
            };
            let (end, text, overlap_len, tokens) = self.fill(start, carry);
            let chunk = Chunk {
                ordinal: 0,
                text: text.clone(),
                heading_path: self.section.heading_path.clone(),
                page: pieces[start].page.or(self.section.page),
                token_count: tokens,
            };
            self.out.push((chunk, overlap_len));
            previous = Some(text);
            start = end;
        }
        previous
    }

    /// Takes pieces from `start` while they fit; returns (end, text, overlap bytes, tokens).
    fn fill(&self, start: usize, mut carry: String) -> (usize, String, usize, usize) {
        let pieces = &self.section.pieces;
        let mut end = start;
        let mut estimate = if carry.is_empty() {
            0
        } else {
            count_tokens(&carry) + 1
        };
        while end < pieces.len() {
            let cost = pieces[end].tokens + usize::from(end > start);
            if end > start && estimate + cost > self.max {
                break;
            }
            estimate += cost;
            end += 1;
        }
        loop {
            let text = assemble(&carry, &pieces[start..end]);
            let tokens = count_tokens(&text);
            if tokens <= self.max {
                let overlap_len = if carry.is_empty() { 0 } else { carry.len() };
                return (end, text, overlap_len, tokens);
            }
            // The estimate was a little short: give back a piece, or else shrink the overlap.
            if end > start + 1 {
                end -= 1;
            } else if !carry.is_empty() {
                carry = drop_first_word(&carry);
            } else {
                return (end, text, 0, tokens);
            }
        }
    }
}

fn assemble(carry: &str, pieces: &[Piece]) -> String {
    let mut text =
        String::with_capacity(carry.len() + pieces.iter().map(|p| p.text.len() + 2).sum::<usize>());
    text.push_str(carry);
    for (i, piece) in pieces.iter().enumerate() {
        if !text.is_empty() {
            text.push_str(if i == 0 { " " } else { piece.sep_or_space() });
        }
        text.push_str(&piece.text);
    }
    text
}

impl Piece {
    fn sep_or_space(&self) -> &'static str {
        if self.sep.is_empty() {
            " "
        } else {
            self.sep
        }
    }
}

/// The longest run of whole words at the end of `text` within `budget` tokens.
fn tail_words(text: &str, budget: usize) -> String {
    if budget == 0 {
        return String::new();
    }
    let starts: Vec<usize> = word_starts(text);
    let n = starts.len();
    let suffix = |k: usize| &text[starts[n - k]..];
    // Search on the number of trailing words, guided by how far each count missed: with about
    // one token per word this settles in two or three counts.
    let (mut fits, mut too_many) = (0usize, n + 1);
    let mut guess = (budget * 3 / 4).clamp(1, n.max(1));
    while too_many - fits > 1 {
        let k = guess.clamp(fits + 1, too_many - 1);
        let tokens = count_tokens(suffix(k));
        if tokens <= budget {
            fits = k;
            guess = k + ((budget - tokens) * 3 / 4).max(1);
        } else {
            too_many = k;
            guess = k.saturating_sub((tokens - budget).max(1));
        }
    }
    if fits == 0 {
        return String::new();
    }
    suffix(fits).to_string()
}

fn word_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_space = true;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            starts.push(i);
            in_space = false;
        }
    }
    starts
}

fn drop_first_word(text: &str) -> String {
    word_starts(text)
        .get(1)
        .map_or_else(String::new, |&i| text[i..].to_string())
}

#[cfg(test)]
mod tests;
