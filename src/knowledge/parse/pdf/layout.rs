//! Reading order from glyph positions: glyphs → fragments (runs on one baseline) → columns →
//! lines → paragraphs and headings.
//!
//! Columns: a vertical gutter that no fragment crosses, with text on both sides at the same
//! heights, splits a page region into left and right, read one after the other. Because a table
//! also has gutters, the split is taken only when the content stream already draws the sides one
//! after the other, or when both sides read as prose (long lines), which table cells rarely do.

use std::collections::{HashMap, HashSet};

use crate::knowledge::parse::{normalize_inline, Block, BlockKind, BlockSink};

pub struct Glyph {
    pub x: f64,
    /// Baseline, measured down from the top of the page.
    pub y: f64,
    pub width: f64,
    pub size: f64,
    pub text: String,
}

pub struct PageText {
    pub number: u32,
    pub height: f64,
    pub glyphs: Vec<Glyph>,
}

impl PageText {
    pub fn new(number: u32) -> Self {
        PageText {
            number,
            height: 0.0,
            glyphs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct Frag {
    x0: f64,
    x1: f64,
    y: f64,
    size: f64,
    text: String,
    /// Position in the content stream.
    order: usize,
}

#[derive(Debug, Clone)]
struct Line {
    x0: f64,
    x1: f64,
    y: f64,
    size: f64,
    text: String,
}

/// Recursion depth of the column split (two levels allow three or four columns).
const MAX_SPLIT_DEPTH: usize = 2;
/// Lines at the top or bottom of a page within this share of its height may be running heads.
const MARGIN_SHARE: f64 = 0.1;

pub fn blocks(pages: Vec<PageText>) -> Vec<Block> {
    let mut laid_out: Vec<(u32, f64, Vec<Vec<Line>>)> = pages
        .into_iter()
        .map(|p| {
            let frags = dedupe(fragments(&p.glyphs));
            (p.number, p.height, order(frags, 0))
        })
        .collect();
    drop_running_heads(&mut laid_out);
    let body = body_size(&laid_out);
    let heading_sizes = heading_sizes(&laid_out, body);
    let mut sink = BlockSink::default();
    for (number, _, regions) in &laid_out {
        sink.page = Some(*number);
        for region in regions {
            emit_region(&mut sink, region, &heading_sizes);
        }
    }
    sink.blocks
}

/// Joins glyphs drawn one after another on the same baseline without a big jump.
fn fragments(glyphs: &[Glyph]) -> Vec<Frag> {
    let mut frags: Vec<Frag> = Vec::new();
    for g in glyphs {
        if let Some(f) = frags.last_mut() {
            let size = f.size.max(g.size);
            let gap = g.x - f.x1;
            if (g.y - f.y).abs() <= 0.3 * size && gap >= -0.5 * size && gap <= 1.0 * size {
                if gap > 0.15 * size && !f.text.ends_with(' ') && !g.text.starts_with(' ') {
                    f.text.push(' ');
                }
                f.text.push_str(&g.text);
                f.x1 = f.x1.max(g.x + g.width);
                f.size = f.size.max(g.size);
                continue;
            }
        }
        if g.text.trim().is_empty() {
            continue;
        }
        let order = frags.len();
        frags.push(Frag {
            x0: g.x,
            x1: g.x + g.width,
            y: g.y,
            size: g.size,
            text: g.text.clone(),
            order,
        });
    }
    for f in &mut frags {
        f.text = f.text.trim().to_string();
    }
    frags.retain(|f| !f.text.is_empty());
    frags
}

/// Drops text drawn twice at the same place (a common way to fake bold).
fn dedupe(frags: Vec<Frag>) -> Vec<Frag> {
    let mut seen = HashSet::new();
    frags
        .into_iter()
        .filter(|f| seen.insert((f.text.clone(), (f.x0 / 2.0) as i64, (f.y / 2.0) as i64)))
        .collect()
}

/// Splits fragments into regions, each a run of lines in reading order.
fn order(frags: Vec<Frag>, depth: usize) -> Vec<Vec<Line>> {
    if frags.is_empty() {
        return Vec::new();
    }
    if depth < MAX_SPLIT_DEPTH {
        if let Some((a, b)) = gutter(&frags) {
            let mid = (a + b) / 2.0;
            let (mut left, mut right, mut spanning) = (Vec::new(), Vec::new(), Vec::new());
            for f in &frags {
                if f.x1 <= mid && f.x1 <= b {
                    left.push(f.clone());
                } else if f.x0 >= mid && f.x0 >= a {
                    right.push(f.clone());
                } else {
                    spanning.push(f.clone());
                }
            }
            if columns_confirmed(&left, &right, spanning.len()) {
                return split_regions(left, right, spanning, depth);
            }
        }
    }
    vec![to_lines(frags)]
}

/// Reads a split region band by band: text crossing the gutter (a full-width heading) separates
/// bands; within a band the left column comes before the right.
fn split_regions(
    left: Vec<Frag>,
    right: Vec<Frag>,
    mut spanning: Vec<Frag>,
    depth: usize,
) -> Vec<Vec<Line>> {
    spanning.sort_by(|a, b| a.y.total_cmp(&b.y));
    let mut regions = Vec::new();
    let mut top = f64::NEG_INFINITY;
    let mut cuts: Vec<f64> = spanning.iter().map(|f| f.y).collect();
    cuts.push(f64::INFINITY);
    let mut spanning = spanning.into_iter().peekable();
    for cut in cuts {
        let in_band = |f: &&Frag| f.y > top && f.y <= cut;
        let band_left: Vec<Frag> = left.iter().filter(in_band).cloned().collect();
        let band_right: Vec<Frag> = right.iter().filter(in_band).cloned().collect();
        regions.extend(order(band_left, depth + 1));
        regions.extend(order(band_right, depth + 1));
        let mut across = Vec::new();
        while let Some(f) = spanning.next_if(|f| f.y <= cut) {
            across.push(f);
        }
        if !across.is_empty() {
            regions.push(to_lines(across));
        }
        top = cut;
    }
    regions.retain(|r| !r.is_empty());
    regions
}

/// The widest vertical strip, away from the edges, that (almost) no fragment crosses.
fn gutter(frags: &[Frag]) -> Option<(f64, f64)> {
    let xmin = frags.iter().map(|f| f.x0).fold(f64::INFINITY, f64::min);
    let xmax = frags.iter().map(|f| f.x1).fold(f64::NEG_INFINITY, f64::max);
    let width = xmax - xmin;
    if !width.is_finite() || width < 100.0 || frags.len() < 6 {
        return None;
    }
    let bins = (width.ceil() as usize).clamp(1, 2000);
    let scale = bins as f64 / width;
    let bin = |x: f64| (((x - xmin) * scale) as usize).min(bins);
    let mut coverage = vec![0usize; bins + 1];
    for f in frags {
        for c in &mut coverage[bin(f.x0)..bin(f.x1)] {
            *c += 1;
        }
    }
    let allowance = frags.len() / 20;
    let mut sizes: Vec<f64> = frags.iter().map(|f| f.size).collect();
    sizes.sort_by(f64::total_cmp);
    let min_width = (sizes[sizes.len() / 2] * 0.6).max(4.0) * scale;
    let (lo, hi) = (bins / 10, bins - bins / 10);
    let mut best: Option<(usize, usize)> = None;
    let mut run_start = None;
    for (i, &c) in coverage.iter().enumerate().take(hi).skip(lo) {
        match (c <= allowance, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(s)) => {
                if best.is_none_or(|(bs, be)| i - s > be - bs) {
                    best = Some((s, i));
                }
                run_start = None;
            }
            _ => {}
        }
    }
    // A run still open at `hi` reaches the right edge zone: a ragged margin, not a gutter.
    let (s, e) = best?;
    if ((e - s) as f64) < min_width {
        return None;
    }
    Some((xmin + s as f64 / scale, xmin + e as f64 / scale))
}

fn columns_confirmed(left: &[Frag], right: &[Frag], spanning: usize) -> bool {
    if left.len() < 3 || right.len() < 3 {
        return false;
    }
    // Side by side: the right column's lines sit within the left column's height, mostly.
    let (ltop, lbot) = y_range(left);
    let beside = right
        .iter()
        .filter(|f| f.y >= ltop - f.size && f.y <= lbot + f.size)
        .count();
    if beside * 2 < right.len() {
        return false;
    }
    let mut sides: Vec<(usize, bool)> = left
        .iter()
        .map(|f| (f.order, false))
        .chain(right.iter().map(|f| (f.order, true)))
        .collect();
    sides.sort_unstable();
    let switches = sides.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let column_major = switches <= 2 * (spanning + 1);
    column_major || (reads_as_prose(left) && reads_as_prose(right))
}

fn reads_as_prose(side: &[Frag]) -> bool {
    let mut lens: Vec<usize> = side.iter().map(|f| f.text.chars().count()).collect();
    lens.sort_unstable();
    lens[lens.len() / 2] >= 18
}

fn y_range(frags: &[Frag]) -> (f64, f64) {
    frags
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), f| {
            (lo.min(f.y), hi.max(f.y))
        })
}

/// Groups fragments sharing a baseline into lines, top to bottom, each left to right.
fn to_lines(mut frags: Vec<Frag>) -> Vec<Line> {
    frags.sort_by(|a, b| a.y.total_cmp(&b.y).then(a.x0.total_cmp(&b.x0)));
    let mut lines: Vec<(f64, f64, Vec<Frag>)> = Vec::new();
    for f in frags {
        match lines.last_mut() {
            Some((y, size, members)) if (f.y - *y).abs() <= 0.4 * size.max(f.size) => {
                *size = size.max(f.size);
                members.push(f);
            }
            _ => lines.push((f.y, f.size, vec![f])),
        }
    }
    lines
        .into_iter()
        .map(|(y, size, mut members)| {
            members.sort_by(|a, b| a.x0.total_cmp(&b.x0));
            let text = members
                .iter()
                .map(|m| m.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            Line {
                x0: members.iter().map(|m| m.x0).fold(f64::INFINITY, f64::min),
                x1: members
                    .iter()
                    .map(|m| m.x1)
                    .fold(f64::NEG_INFINITY, f64::max),
                y,
                size,
                text,
            }
        })
        .collect()
}

/// A line's text with digits blurred, so "Page 3" and "Page 4" count as the same running head.
fn running_key(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                '#'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn is_page_number(text: &str) -> bool {
    let key: String = text
        .to_ascii_lowercase()
        .replace("page", "")
        .replace("halaman", "")
        .replace("of", "/")
        .replace("dari", "/")
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '–' | '|'))
        .collect();
    !key.is_empty()
        && key.chars().any(|c| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_digit() || c == '/')
}

fn drop_running_heads(pages: &mut [(u32, f64, Vec<Vec<Line>>)]) {
    let in_margin = |line: &Line, height: f64| {
        height > 0.0 && (line.y < height * MARGIN_SHARE || line.y > height * (1.0 - MARGIN_SHARE))
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (_, height, regions) in pages.iter() {
        let keys: HashSet<String> = regions
            .iter()
            .flatten()
            .filter(|l| in_margin(l, *height))
            .map(|l| running_key(&l.text))
            .collect();
        for key in keys {
            *counts.entry(key).or_default() += 1;
        }
    }
    let threshold = (pages.len() / 2).max(3);
    for (_, height, regions) in pages.iter_mut() {
        for region in regions.iter_mut() {
            region.retain(|l| {
                !(in_margin(l, *height)
                    && (is_page_number(&l.text)
                        || counts.get(&running_key(&l.text)).copied().unwrap_or(0) >= threshold))
            });
        }
    }
}

fn size_key(size: f64) -> i64 {
    (size * 2.0).round() as i64
}

/// The size most of the text is set in.
fn body_size(pages: &[(u32, f64, Vec<Vec<Line>>)]) -> f64 {
    let mut weight: HashMap<i64, usize> = HashMap::new();
    for line in pages.iter().flat_map(|(_, _, r)| r.iter().flatten()) {
        *weight.entry(size_key(line.size)).or_default() += line.text.chars().count();
    }
    weight
        .into_iter()
        .max_by_key(|&(key, chars)| (chars, -key))
        .map_or(0.0, |(key, _)| key as f64 / 2.0)
}

/// Heading level by size key: sizes clearly above body text, largest first.
fn heading_sizes(pages: &[(u32, f64, Vec<Vec<Line>>)], body: f64) -> HashMap<i64, u8> {
    let mut keys: Vec<i64> = pages
        .iter()
        .flat_map(|(_, _, r)| r.iter().flatten())
        .filter(|l| body > 0.0 && l.size >= body * 1.2 && l.text.chars().count() <= 150)
        .map(|l| size_key(l.size))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    keys.into_iter()
        .take(6)
        .enumerate()
        .map(|(i, k)| (k, i as u8 + 1))
        .collect()
}

fn is_bullet(text: &str) -> bool {
    text.starts_with(['•', '▪', '◦', '‣', '●', '○', '■', '–'])
        || text.starts_with("- ")
        || text.starts_with("* ")
}

/// Cuts a region's lines into paragraphs at wider gaps, size changes and bullets.
fn emit_region(sink: &mut BlockSink, lines: &[Line], heading_sizes: &HashMap<i64, u8>) {
    let mut gaps: Vec<f64> = lines
        .windows(2)
        .map(|w| w[1].y - w[0].y)
        .filter(|g| *g > 0.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let typical = gaps.get(gaps.len() / 2).copied();
    let width_max = lines.iter().map(|l| l.x1).fold(f64::NEG_INFINITY, f64::max);
    let width_min = lines.iter().map(|l| l.x0).fold(f64::INFINITY, f64::min);
    let region_width = width_max - width_min;

    let mut paragraph: Vec<&Line> = Vec::new();
    for line in lines {
        if let Some(prev) = paragraph.last() {
            let gap = line.y - prev.y;
            let limit = match typical {
                Some(t) if t < 3.0 * prev.size => t * 1.3 + 0.5,
                _ => prev.size * 1.5,
            };
            let size_changed = (line.size - prev.size).abs() > 0.15 * line.size.max(prev.size);
            let heading_changed = heading_sizes.contains_key(&size_key(line.size))
                != heading_sizes.contains_key(&size_key(prev.size));
            let ended_short = prev.x1 < width_max - 0.25 * region_width
                && prev.text.ends_with(['.', '!', '?', ':']);
            if gap > limit
                || gap < -prev.size
                || size_changed
                || heading_changed
                || ended_short
                || is_bullet(&line.text)
            {
                flush(sink, &mut paragraph, heading_sizes);
            }
        }
        paragraph.push(line);
    }
    flush(sink, &mut paragraph, heading_sizes);
}

fn flush(sink: &mut BlockSink, paragraph: &mut Vec<&Line>, heading_sizes: &HashMap<i64, u8>) {
    if paragraph.is_empty() {
        return;
    }
    let mut text = String::new();
    for line in paragraph.iter() {
        let t = line.text.trim();
        let hyphenated = text.ends_with('-')
            && text.chars().rev().nth(1).is_some_and(char::is_alphabetic)
            && t.starts_with(char::is_lowercase);
        if hyphenated {
            text.pop();
        } else if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(t);
    }
    let text = normalize_inline(&text);
    let size = paragraph.iter().map(|l| l.size).fold(0.0, f64::max);
    let level = heading_sizes.get(&size_key(size)).copied();
    match level {
        Some(level) if paragraph.len() <= 3 && text.chars().count() <= 200 => {
            sink.heading(level, &text)
        }
        _ if is_bullet(&text) => {
            let item = text.trim_start_matches(['•', '▪', '◦', '‣', '●', '○', '■', '–', '-', '*']);
            sink.push(BlockKind::ListItem, item.trim());
        }
        _ => sink.push(BlockKind::Paragraph, &text),
    }
    paragraph.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(text: &str, x: f64, y: f64, size: f64) -> Vec<Glyph> {
        let advance = size * 0.5;
        text.chars()
            .enumerate()
            .map(|(i, c)| Glyph {
                x: x + i as f64 * advance,
                y,
                width: advance,
                size,
                text: c.to_string(),
            })
            .collect()
    }

    #[test]
    fn interleaved_columns_read_left_then_right() {
        let mut glyphs = Vec::new();
        for row in 0..5 {
            let y = 100.0 + row as f64 * 12.0;
            glyphs.extend(line_of(
                &format!("left column sentence number {row}"),
                50.0,
                y,
                10.0,
            ));
            glyphs.extend(line_of(
                &format!("right column sentence number {row}"),
                320.0,
                y,
                10.0,
            ));
        }
        let page = PageText {
            number: 1,
            height: 800.0,
            glyphs,
        };
        let text: Vec<String> = blocks(vec![page]).into_iter().map(|b| b.text).collect();
        let all = text.join(" ");
        let last_left = all.rfind("left column").unwrap();
        let first_right = all.find("right column").unwrap();
        assert!(last_left < first_right, "{all}");
    }

    #[test]
    fn table_rows_drawn_row_by_row_stay_rows() {
        let mut glyphs = Vec::new();
        for row in 0..5 {
            let y = 100.0 + row as f64 * 12.0;
            glyphs.extend(line_of(&format!("Item {row}"), 50.0, y, 10.0));
            glyphs.extend(line_of(&format!("Rp {row}0.000"), 320.0, y, 10.0));
        }
        let page = PageText {
            number: 1,
            height: 800.0,
            glyphs,
        };
        let all: String = blocks(vec![page])
            .into_iter()
            .map(|b| b.text)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(all.contains("Item 0 Rp 00.000 Item 1 Rp 10.000"), "{all}");
    }

    #[test]
    fn page_numbers_and_running_heads_are_dropped() {
        let pages = (1..=4)
            .map(|n| {
                let mut glyphs = line_of("ACME confidential", 50.0, 20.0, 8.0);
                glyphs.extend(line_of(
                    &format!("Body text of page {n}."),
                    50.0,
                    300.0,
                    10.0,
                ));
                glyphs.extend(line_of(&format!("{n}"), 300.0, 780.0, 8.0));
                PageText {
                    number: n,
                    height: 800.0,
                    glyphs,
                }
            })
            .collect();
        let out = blocks(pages);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|b| b.text.starts_with("Body text")));
        assert_eq!(out[3].page, Some(4));
    }

    #[test]
    fn bigger_type_becomes_a_heading() {
        let mut glyphs = line_of("Opening hours", 50.0, 60.0, 18.0);
        glyphs.extend(line_of(
            "We open at seven every day of the week.",
            50.0,
            100.0,
            10.0,
        ));
        glyphs.extend(line_of("Holidays are different.", 50.0, 112.0, 10.0));
        let out = blocks(vec![PageText {
            number: 1,
            height: 800.0,
            glyphs,
        }]);
        assert_eq!(out[0].kind, BlockKind::Heading);
        assert_eq!(out[1].heading_path, vec!["Opening hours".to_string()]);
    }

    #[test]
    fn hyphenated_line_ends_are_joined() {
        let mut glyphs = line_of("The reser-", 50.0, 100.0, 10.0);
        glyphs.extend(line_of("vation is confirmed.", 50.0, 112.0, 10.0));
        let out = blocks(vec![PageText {
            number: 1,
            height: 800.0,
            glyphs,
        }]);
        assert_eq!(out[0].text, "The reservation is confirmed.");
    }
}
