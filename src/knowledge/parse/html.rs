//! HTML: the visible main text, with headings, lists, `<pre>` and data tables kept as such.
//!
//! Boilerplate is dropped by element (scripts, styles, navigation, page header and footer,
//! asides, forms, hidden elements); a fetched web page additionally keeps only its marked main
//! content and drops blocks whose class or id names them as navigation, banners and the like,
//! and lists that are mostly links. The tree is walked iteratively, so deeply nested hostile
//! markup cannot overflow the stack.

use ego_tree::iter::Edge;
use ego_tree::NodeRef;
use scraper::{Html, Node};

use super::{
    encoding, normalize_inline, table, BlockKind, BlockSink, DocumentFormat, ParseError,
    ParsedDocument,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An uploaded .html file: the whole body minus boilerplate elements.
    Document,
    /// A page fetched for URL ingestion: main content only, with heuristics.
    WebPage,
}

/// Elements that never hold content a customer would ask about.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "head", "nav", "footer", "aside", "form", "button",
    "select", "option", "textarea", "input", "iframe", "svg", "canvas", "object", "embed",
    "dialog", "menu", "map", "audio", "video",
];

/// Class/id words that mark boilerplate on real sites (matched against whole words of the
/// attribute, split at `-`, `_` and spaces, so `site-nav` matches but `canvas-size` does not).
const BOILERPLATE_WORDS: &[&str] = &[
    "nav",
    "navbar",
    "navigation",
    "menu",
    "breadcrumb",
    "breadcrumbs",
    "cookie",
    "cookies",
    "consent",
    "banner",
    "sidebar",
    "share",
    "sharing",
    "social",
    "comments",
    "comment",
    "footer",
    "header",
    "masthead",
    "subscribe",
    "newsletter",
    "related",
    "advert",
    "ads",
    "ad",
    "popup",
    "modal",
    "skip",
    "promo",
    "signup",
    "login",
];

const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "body",
    "blockquote",
    "figure",
    "figcaption",
    "address",
    "details",
    "summary",
    "dl",
    "dt",
    "dd",
    "ul",
    "ol",
    "hr",
    "center",
    "fieldset",
    "caption",
    "header",
];

/// Deeper than any real page; html5ever's tree builder slows quadratically with depth (a 20 MiB
/// file of `<div>`s would take hours), so deeper markup is refused before it is built.
const MAX_DEPTH: usize = 4096;

pub fn parse(
    bytes: &[u8],
    charset: Option<&str>,
    mode: Mode,
) -> Result<ParsedDocument, ParseError> {
    let text = encoding::decode_html(bytes, charset);
    if nesting_depth(&text) > MAX_DEPTH {
        return Err(ParseError::corrupt(format!(
            "the HTML nests elements more than {MAX_DEPTH} levels deep"
        )));
    }
    let html = Html::parse_document(&text);
    let title = title(&html);
    let root = content_root(&html, mode);
    let mut walker = Walker {
        mode,
        sink: BlockSink::default(),
        buffer: String::new(),
        heading: None,
        pre: 0,
        items: 0,
        tables: Vec::new(),
    };
    walker.walk(root);
    let blocks = walker.sink.blocks;
    let title = title.or_else(|| {
        blocks
            .iter()
            .find(|b| b.kind == BlockKind::Heading)
            .map(|b| b.text.clone())
    });
    Ok(ParsedDocument {
        format: DocumentFormat::Html,
        title,
        blocks,
    })
}

fn title(html: &Html) -> Option<String> {
    html.tree
        .root()
        .descendants()
        .find(|n| matches!(n.value(), Node::Element(e) if e.name() == "title"))
        .map(|n| text_of(n))
        .filter(|t| !t.is_empty())
}

/// The subtree to read: the whole document, or for a web page its marked main content.
fn content_root(html: &Html, mode: Mode) -> NodeRef<'_, Node> {
    let root = html.tree.root();
    if mode == Mode::Document {
        return root;
    }
    let element = |n: &NodeRef<'_, Node>| match n.value() {
        Node::Element(e) => Some((e.name().to_string(), e.attr("role").map(str::to_string))),
        _ => None,
    };
    if let Some(main) = root.descendants().find(|n| {
        element(n).is_some_and(|(name, role)| name == "main" || role.as_deref() == Some("main"))
    }) {
        return main;
    }
    root.descendants()
        .filter(|n| element(n).is_some_and(|(name, _)| name == "article"))
        .max_by_key(|n| text_len(*n))
        .unwrap_or(root)
}

struct TableState {
    /// Rows of a data table become `TableRow` blocks; a layout table is read like divs.
    data: bool,
    header: Option<Vec<String>>,
    row: Vec<String>,
    row_is_th: bool,
    rows_seen: usize,
}

struct Walker {
    mode: Mode,
    sink: BlockSink,
    buffer: String,
    heading: Option<u8>,
    pre: usize,
    items: usize,
    tables: Vec<TableState>,
}

impl Walker {
    fn walk(&mut self, root: NodeRef<'_, Node>) {
        let mut skipping: Option<ego_tree::NodeId> = None;
        for edge in root.traverse() {
            match edge {
                Edge::Open(node) => {
                    if skipping.is_some() {
                        continue;
                    }
                    match node.value() {
                        Node::Text(t) => self.buffer.push_str(t),
                        Node::Element(_) if self.skips(node) => skipping = Some(node.id()),
                        Node::Element(e) => self.open(e.name(), node),
                        _ => {}
                    }
                }
                Edge::Close(node) => {
                    if let Some(id) = skipping {
                        if id == node.id() {
                            skipping = None;
                        }
                        continue;
                    }
                    if let Node::Element(e) = node.value() {
                        self.close(e.name());
                    }
                }
            }
        }
        self.flush();
    }

    fn in_data_cell(&self) -> bool {
        self.tables.last().is_some_and(|t| t.data)
    }

    fn open(&mut self, name: &str, node: NodeRef<'_, Node>) {
        if let Some(level) = heading_level(name) {
            if !self.in_data_cell() {
                self.flush();
                self.heading = Some(level);
            }
            return;
        }
        match name {
            "br" => self.buffer.push(if self.pre > 0 { '\n' } else { ' ' }),
            "pre" => {
                if !self.in_data_cell() {
                    self.flush();
                }
                self.pre += 1;
            }
            "li" => {
                self.flush();
                self.items += 1;
            }
            "table" => {
                self.flush();
                self.tables.push(TableState {
                    data: is_data_table(node),
                    header: None,
                    row: Vec::new(),
                    row_is_th: true,
                    rows_seen: 0,
                });
            }
            "tr" if self.in_data_cell() => {
                if let Some(t) = self.tables.last_mut() {
                    t.row.clear();
                    t.row_is_th = true;
                }
            }
            "td" | "th" if self.in_data_cell() => {
                self.buffer.clear();
                if name == "td" {
                    if let Some(t) = self.tables.last_mut() {
                        t.row_is_th = false;
                    }
                }
            }
            "tr" | "td" | "th" => self.flush(),
            _ if BLOCKS.contains(&name) => {
                if self.in_data_cell() {
                    self.buffer.push(' ');
                } else {
                    self.flush();
                }
            }
            // Inline elements butt against each other in rendering; cells and blocks do not.
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if let Some(level) = heading_level(name) {
            if !self.in_data_cell() {
                let text = std::mem::take(&mut self.buffer);
                self.heading = None;
                self.sink.heading(level, &text);
            }
            return;
        }
        match name {
            "pre" => {
                if !self.in_data_cell() {
                    let text = std::mem::take(&mut self.buffer);
                    self.sink.push(BlockKind::Code, &text);
                }
                self.pre = self.pre.saturating_sub(1);
            }
            "li" => {
                self.flush();
                self.items = self.items.saturating_sub(1);
            }
            "table" => {
                self.flush();
                self.tables.pop();
            }
            "td" | "th" if self.in_data_cell() => {
                let cell = normalize_inline(&std::mem::take(&mut self.buffer));
                if let Some(t) = self.tables.last_mut() {
                    t.row.push(cell);
                }
            }
            "tr" if self.in_data_cell() => self.end_row(),
            _ if (BLOCKS.contains(&name) || matches!(name, "tr" | "td" | "th"))
                && !self.in_data_cell() =>
            {
                self.flush()
            }
            _ => {}
        }
    }

    fn end_row(&mut self) {
        let Some(t) = self.tables.last_mut() else {
            return;
        };
        let row = std::mem::take(&mut t.row);
        t.rows_seen += 1;
        if row.iter().all(|c| c.is_empty()) {
            return;
        }
        if t.rows_seen == 1 && t.header.is_none() && t.row_is_th {
            t.header = Some(row);
            return;
        }
        let text = table::render_row(t.header.as_deref(), &row);
        self.sink.push(BlockKind::TableRow, &text);
    }

    /// Emits pending inline text as a paragraph, or a list item inside `<li>`.
    fn flush(&mut self) {
        if self.in_data_cell() || self.heading.is_some() {
            return;
        }
        let text = std::mem::take(&mut self.buffer);
        let kind = if self.pre > 0 {
            BlockKind::Code
        } else if self.items > 0 {
            BlockKind::ListItem
        } else {
            BlockKind::Paragraph
        };
        self.sink.push(kind, &text);
    }

    fn skips(&self, node: NodeRef<'_, Node>) -> bool {
        let Node::Element(e) = node.value() else {
            return false;
        };
        let name = e.name();
        if SKIPPED.contains(&name) || e.attr("hidden").is_some() {
            return true;
        }
        if e.attr("aria-hidden") == Some("true") {
            return true;
        }
        if e.attr("style").is_some_and(|s| {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let s = s.to_ascii_lowercase();
            s.contains("display:none") || s.contains("visibility:hidden")
        }) {
            return true;
        }
        // A page header holds logos and menus, but an article's own header holds its title.
        if name == "header" && !has_ancestor(node, &["article", "main"]) {
            return true;
        }
        if self.mode == Mode::WebPage {
            if matches!(name, "body" | "html" | "main" | "article") {
                return false;
            }
            if e.attr("role").is_some_and(|r| {
                matches!(
                    r,
                    "navigation" | "banner" | "contentinfo" | "complementary" | "search"
                )
            }) {
                return true;
            }
            let marked = e
                .id()
                .into_iter()
                .chain(e.classes())
                .flat_map(|v| v.split(['-', '_', ' ']))
                .any(|word| BOILERPLATE_WORDS.contains(&word.to_ascii_lowercase().as_str()));
            if marked {
                return true;
            }
            if matches!(name, "ul" | "ol") && mostly_links(node) {
                return true;
            }
        }
        false
    }
}

/// An upper estimate of element nesting from the raw markup: open tags count up, close tags
/// down; void elements and those the parser closes implicitly (`p`, `li`, `td`…) do not count.
fn nesting_depth(html: &str) -> usize {
    const UNCOUNTED: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr", "keygen", "p", "li", "dt", "dd", "option", "optgroup", "tr",
        "td", "th", "thead", "tbody", "tfoot", "colgroup", "caption", "rb", "rt", "rp", "html",
        "head", "body", "!doctype",
    ];
    let bytes = html.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'<') {
        i += offset + 1;
        if bytes[i..].starts_with(b"!--") {
            i = find_from(bytes, i, b"-->").unwrap_or(bytes.len());
            continue;
        }
        let closing = bytes.get(i) == Some(&b'/');
        let name_start = i + usize::from(closing);
        let name_len = bytes[name_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'!')
            .count();
        if name_len == 0 {
            continue;
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        let tag_end = find_from(bytes, name_start, b">").unwrap_or(bytes.len());
        let self_closing = tag_end > 0 && bytes.get(tag_end - 1) == Some(&b'/');
        i = tag_end.min(bytes.len());
        if UNCOUNTED.contains(&name.as_str()) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else if !self_closing {
            depth += 1;
            max = max.max(depth);
            if matches!(name.as_str(), "script" | "style" | "textarea" | "title") {
                // Raw text: skip to the matching close tag.
                let close = format!("</{name}");
                i = find_ignore_case(bytes, i, close.as_bytes()).unwrap_or(bytes.len());
            }
        }
    }
    max
}

fn find_ignore_case(bytes: &[u8], from: usize, lower_needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(lower_needle.len())
        .position(|w| w.eq_ignore_ascii_case(lower_needle))
        .map(|at| from + at)
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

fn has_ancestor(node: NodeRef<'_, Node>, names: &[&str]) -> bool {
    node.ancestors()
        .any(|a| matches!(a.value(), Node::Element(e) if names.contains(&e.name())))
}

/// A table of data (cells of inline text) rather than a page-layout grid.
fn is_data_table(table: NodeRef<'_, Node>) -> bool {
    const LAYOUT: &[&str] = &[
        "table",
        "p",
        "div",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "blockquote",
        "section",
        "article",
    ];
    table
        .descendants()
        .skip(1)
        .take(20_000)
        .all(|n| !matches!(n.value(), Node::Element(e) if LAYOUT.contains(&e.name())))
}

/// A list whose text is mostly link text: a menu, a tag cloud, "related posts".
fn mostly_links(list: NodeRef<'_, Node>) -> bool {
    let mut total = 0usize;
    let mut linked = 0usize;
    let mut items = 0usize;
    for n in list.descendants().take(20_000) {
        match n.value() {
            Node::Element(e) if e.name() == "li" => items += 1,
            Node::Text(t) => {
                let len = t.trim().chars().count();
                total += len;
                if has_ancestor_within(n, list, "a") {
                    linked += len;
                }
            }
            _ => {}
        }
    }
    items >= 3 && total > 0 && linked * 10 >= total * 7
}

fn has_ancestor_within(node: NodeRef<'_, Node>, stop: NodeRef<'_, Node>, name: &str) -> bool {
    for a in node.ancestors() {
        if a.id() == stop.id() {
            return false;
        }
        if matches!(a.value(), Node::Element(e) if e.name() == name) {
            return true;
        }
    }
    false
}

fn text_of(node: NodeRef<'_, Node>) -> String {
    let mut s = String::new();
    for n in node.descendants() {
        if let Node::Text(t) = n.value() {
            s.push_str(t);
            s.push(' ');
        }
    }
    normalize_inline(&s)
}

fn text_len(node: NodeRef<'_, Node>) -> usize {
    node.descendants()
        .map(|n| match n.value() {
            Node::Text(t) => t.trim().len(),
            _ => 0,
        })
        .sum()
}
