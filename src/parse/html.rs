//! HTML to plain text for HTML-only mail, for search indexing and previews.
//!
//! Not a browser: a single forward pass over the bytes that drops markup and invisible elements,
//! turns block elements into line breaks, decodes common entities and collapses whitespace the
//! way HTML rendering does. Every search only moves forward and a failed search is remembered,
//! so hostile input (`<<<<...`, unclosed comments, thousands of `<script>`) stays linear.

use super::entities::decode_entity;

/// Elements whose content is never shown.
const HIDDEN_ELEMENTS: &[&str] = &["script", "style", "title", "template", "noscript", "xml"];

/// Elements that end a paragraph: a blank line before and after.
const PARAGRAPH_ELEMENTS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "hr",
    "address",
    "figure",
];

/// Elements that start a new line.
const LINE_ELEMENTS: &[&str] = &[
    "div",
    "tr",
    "li",
    "dt",
    "dd",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "form",
    "main",
    "center",
    "figcaption",
    "fieldset",
    "caption",
    "tbody",
    "thead",
    "tfoot",
    "body",
    "html",
];

/// Elements that separate cells on one line.
const CELL_ELEMENTS: &[&str] = &["td", "th"];

/// Renders HTML as readable plain text in time linear in `html.len()`.
pub fn html_to_text(html: &str) -> String {
    let mut renderer = Renderer {
        html,
        bytes: html.as_bytes(),
        position: 0,
        output: TextOutput::with_capacity(html.len() / 2),
        searches: SearchCache::default(),
        preformatted: 0,
    };
    renderer.run();
    renderer.output.finish()
}

struct Renderer<'a> {
    html: &'a str,
    bytes: &'a [u8],
    position: usize,
    output: TextOutput,
    searches: SearchCache,
    /// Depth of open `<pre>` elements, where whitespace is kept as written.
    preformatted: usize,
}

impl Renderer<'_> {
    fn run(&mut self) {
        while self.position < self.bytes.len() {
            let text_end = find_byte(self.bytes, self.position, b'<').unwrap_or(self.bytes.len());
            if text_end > self.position {
                self.emit_text(self.position, text_end);
                self.position = text_end;
                continue;
            }
            self.handle_markup();
        }
    }

    /// Handles the `<` at `self.position`: a comment, declaration, tag, or a literal `<`.
    fn handle_markup(&mut self) {
        let rest = self.bytes.get(self.position..).unwrap_or_default();
        if rest.starts_with(b"<!--") {
            self.position = self
                .searches
                .find(Needle::CommentEnd, self.bytes, self.position + 4)
                .map_or(self.bytes.len(), |at| at + 3);
            return;
        }
        let Some(tag_end) = self
            .searches
            .find(Needle::TagEnd, self.bytes, self.position + 1)
        else {
            // No `>` anywhere after this point: the rest is text.
            self.emit_text(self.position, self.bytes.len());
            self.position = self.bytes.len();
            return;
        };
        let inner = self
            .bytes
            .get(self.position + 1..tag_end)
            .unwrap_or_default();
        let (closing, name) = tag_name(inner);
        if name.is_empty() && !matches!(inner.first(), Some(b'!' | b'?')) {
            // A `<` that does not start a tag ("a < b"): keep it as text.
            self.emit_text(self.position, self.position + 1);
            self.position += 1;
            return;
        }
        self.position = tag_end + 1;
        self.apply_tag(closing, name);
    }

    fn apply_tag(&mut self, closing: bool, name: &[u8]) {
        if !closing && is_one_of(name, HIDDEN_ELEMENTS) {
            self.skip_hidden(name);
        } else if !closing && name.eq_ignore_ascii_case(b"head") {
            self.skip_head();
        } else if name.eq_ignore_ascii_case(b"br") {
            self.output.line_break();
        } else if name.eq_ignore_ascii_case(b"pre") {
            self.preformatted = if closing {
                self.preformatted.saturating_sub(1)
            } else {
                self.preformatted + 1
            };
            self.output.block_break(2);
        } else if is_one_of(name, PARAGRAPH_ELEMENTS) {
            self.output.block_break(2);
        } else if is_one_of(name, LINE_ELEMENTS) {
            self.output.block_break(1);
            if !closing && name.eq_ignore_ascii_case(b"li") {
                self.output.push_text("- ");
            }
        } else if !closing && (is_one_of(name, CELL_ELEMENTS) || name.eq_ignore_ascii_case(b"img"))
        {
            self.output.space();
        }
    }

    /// Skips to after `</name>`; like browsers, an unclosed script or style hides the rest.
    fn skip_hidden(&mut self, name: &[u8]) {
        let needle = Needle::closing_tag(name);
        self.position = match self.searches.find(needle, self.bytes, self.position) {
            Some(at) => find_byte(self.bytes, at, b'>').map_or(self.bytes.len(), |end| end + 1),
            None => self.bytes.len(),
        };
    }

    /// Skips the document head, ending at `</head>` or `<body`. With neither present the head is
    /// not skipped, so a broken document still shows its text.
    fn skip_head(&mut self) {
        let head_end = self
            .searches
            .find(Needle::HeadClose, self.bytes, self.position);
        let body_start = self
            .searches
            .find(Needle::BodyOpen, self.bytes, self.position);
        let stop = match (head_end, body_start) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        self.position = stop;
    }

    /// Emits the text in `start..end`, decoding entities and collapsing whitespace.
    fn emit_text(&mut self, start: usize, end: usize) {
        let mut position = start;
        while position < end {
            let byte = self.bytes.get(position).copied().unwrap_or(b' ');
            if byte == b'&' {
                let (decoded, consumed) =
                    decode_entity(self.bytes.get(position..end).unwrap_or_default());
                match decoded {
                    Some(c) => self.output.push_char(c, self.preformatted > 0),
                    None => self.output.push_text("&"),
                }
                position += consumed;
            } else if byte.is_ascii_whitespace() {
                self.output.push_char(byte as char, self.preformatted > 0);
                position += 1;
            } else {
                let run_end = self
                    .bytes
                    .get(position..end)
                    .unwrap_or_default()
                    .iter()
                    .position(|&b| b == b'&' || b.is_ascii_whitespace())
                    .map_or(end, |offset| position + offset);
                // Runs split only at ASCII bytes, so they are on char boundaries.
                self.output
                    .push_text(self.html.get(position..run_end).unwrap_or_default());
                position = run_end;
            }
        }
    }
}

/// Returns whether the tag is a closing one and its name (letters, digits, `:` and `-`).
fn tag_name(inner: &[u8]) -> (bool, &[u8]) {
    let (closing, rest) = match inner.first() {
        Some(b'/') => (true, inner.get(1..).unwrap_or_default()),
        _ => (false, inner),
    };
    let starts_with_letter = rest.first().is_some_and(u8::is_ascii_alphabetic);
    if !starts_with_letter {
        return (closing, &[]);
    }
    let length = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b':' || b == b'-'))
        .unwrap_or(rest.len());
    (closing, rest.get(..length).unwrap_or_default())
}

fn is_one_of(name: &[u8], list: &[&str]) -> bool {
    list.iter()
        .any(|candidate| name.eq_ignore_ascii_case(candidate.as_bytes()))
}

fn find_byte(bytes: &[u8], from: usize, wanted: u8) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == wanted)
        .map(|offset| from + offset)
}

/// Searches that may be repeated from later positions. The cursor only moves forward, so a
/// result found at `q` stays valid for any later start `<= q`, and a failure stays a failure.
#[derive(Default)]
struct SearchCache {
    entries: Vec<(Needle, SearchResult)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Needle {
    TagEnd,
    CommentEnd,
    HeadClose,
    BodyOpen,
    /// `</name` for one of [`HIDDEN_ELEMENTS`], by index.
    ClosingHidden(usize),
}

impl Needle {
    fn closing_tag(name: &[u8]) -> Needle {
        let index = HIDDEN_ELEMENTS
            .iter()
            .position(|candidate| name.eq_ignore_ascii_case(candidate.as_bytes()))
            .unwrap_or(0);
        Needle::ClosingHidden(index)
    }

    /// Literal bytes to find, matched ASCII case-insensitively.
    fn pattern(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Needle::TagEnd => (b">", b""),
            Needle::CommentEnd => (b"-->", b""),
            Needle::HeadClose => (b"</", b"head"),
            Needle::BodyOpen => (b"<", b"body"),
            Needle::ClosingHidden(index) => (
                b"</",
                HIDDEN_ELEMENTS
                    .get(index)
                    .map_or(&b"script"[..], |n| n.as_bytes()),
            ),
        }
    }
}

#[derive(Clone, Copy)]
enum SearchResult {
    Found(usize),
    NotFoundFrom(usize),
}

impl SearchCache {
    fn find(&mut self, needle: Needle, haystack: &[u8], from: usize) -> Option<usize> {
        let cached = self
            .entries
            .iter()
            .find(|(n, _)| *n == needle)
            .map(|(_, r)| *r);
        match cached {
            Some(SearchResult::Found(at)) if at >= from => return Some(at),
            Some(SearchResult::NotFoundFrom(start)) if from >= start => return None,
            _ => {}
        }
        let (prefix, name) = needle.pattern();
        let result = find_pattern(haystack, from, prefix, name);
        let entry = result.map_or(SearchResult::NotFoundFrom(from), SearchResult::Found);
        match self.entries.iter_mut().find(|(n, _)| *n == needle) {
            Some(slot) => slot.1 = entry,
            None => self.entries.push((needle, entry)),
        }
        result
    }
}

/// Finds `prefix` followed by `name` (ASCII case-insensitive); `name` must end at a non-name byte.
fn find_pattern(haystack: &[u8], from: usize, prefix: &[u8], name: &[u8]) -> Option<usize> {
    let first = *prefix.first()?;
    let mut position = from;
    while let Some(at) = find_byte(haystack, position, first) {
        let after_prefix = at + prefix.len();
        let prefix_matches = haystack.get(at..after_prefix) == Some(prefix);
        let name_matches = haystack
            .get(after_prefix..after_prefix + name.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(name));
        let name_ends = name.is_empty()
            || haystack
                .get(after_prefix + name.len())
                .is_none_or(|b| !b.is_ascii_alphanumeric());
        if prefix_matches && name_matches && name_ends {
            return Some(at);
        }
        position = at + 1;
    }
    None
}

/// Output with HTML whitespace rules: runs of whitespace become one space, block breaks become at
/// most one blank line, and nothing dangles at line ends.
struct TextOutput {
    text: String,
    pending_space: bool,
    pending_newlines: usize,
}

impl TextOutput {
    fn with_capacity(capacity: usize) -> TextOutput {
        TextOutput {
            text: String::with_capacity(capacity),
            pending_space: false,
            pending_newlines: 0,
        }
    }

    fn space(&mut self) {
        self.pending_space = true;
    }

    fn block_break(&mut self, newlines: usize) {
        self.pending_newlines = self.pending_newlines.max(newlines);
    }

    fn line_break(&mut self) {
        self.pending_newlines = (self.pending_newlines + 1).min(2);
        self.pending_space = false;
    }

    fn push_char(&mut self, c: char, preformatted: bool) {
        match c {
            '\n' if preformatted => self.line_break(),
            '\r' if preformatted => {}
            c if c.is_whitespace() && !preformatted => self.space(),
            '\u{200b}' => {}
            c => {
                let mut buffer = [0u8; 4];
                self.push_text(c.encode_utf8(&mut buffer));
            }
        }
    }

    fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if !self.text.is_empty() {
            if self.pending_newlines > 0 {
                self.trim_line_end();
                for _ in 0..self.pending_newlines {
                    self.text.push('\n');
                }
            } else if self.pending_space && !self.text.ends_with('\n') {
                self.text.push(' ');
            }
        }
        self.pending_newlines = 0;
        self.pending_space = false;
        self.text.push_str(text);
    }

    fn trim_line_end(&mut self) {
        let trimmed = self.text.trim_end_matches([' ', '\t']).len();
        self.text.truncate(trimmed);
    }

    fn finish(mut self) -> String {
        self.trim_line_end();
        let trimmed = self.text.trim_end().len();
        self.text.truncate(trimmed);
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn drops_markup_and_keeps_text() {
        assert_eq!(html_to_text("<b>Hello</b> <i>world</i>"), "Hello world");
    }

    #[test]
    fn drops_script_style_head_and_comments() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head>\
                    <body><script>alert(1)</script><!-- hidden -->Visible</body></html>";
        assert_eq!(html_to_text(html), "Visible");
    }

    #[test]
    fn block_elements_and_br_make_lines() {
        assert_eq!(html_to_text("<p>One</p><p>Two</p>"), "One\n\nTwo");
        assert_eq!(html_to_text("<div>a</div><div>b</div>"), "a\nb");
        assert_eq!(html_to_text("a<br>b<br/><br />c"), "a\nb\n\nc");
        assert_eq!(html_to_text("<ul><li>x</li><li>y</li></ul>"), "- x\n- y");
        assert_eq!(
            html_to_text("<table><tr><td>1</td><td>2</td></tr></table>"),
            "1 2"
        );
    }

    #[test]
    fn decodes_entities() {
        assert_eq!(
            html_to_text("&amp; &lt; &gt; &quot; &#39; a&nbsp;b &#x41;&#66; &euro;"),
            "& < > \" ' a b AB €"
        );
        assert_eq!(
            html_to_text("AT&T &unknown; &#xZZ; &"),
            "AT&T &unknown; &#xZZ; &"
        );
        assert_eq!(html_to_text("&#0; &#1114112;"), "\u{fffd} \u{fffd}");
    }

    #[test]
    fn collapses_whitespace() {
        assert_eq!(html_to_text("  a \n\t b  \r\n "), "a b");
        assert_eq!(html_to_text("<p>  a  </p>  <p>  b </p>"), "a\n\nb");
    }

    #[test]
    fn keeps_preformatted_lines() {
        assert_eq!(html_to_text("<pre>a\n  b</pre>c"), "a\n  b\n\nc");
    }

    #[test]
    fn keeps_text_with_stray_angle_brackets() {
        assert_eq!(html_to_text("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
        assert_eq!(html_to_text("x <"), "x <");
        assert_eq!(html_to_text("before <b"), "before <b");
    }

    #[test]
    fn unclosed_hidden_elements_hide_the_rest() {
        assert_eq!(html_to_text("a<script>b"), "a");
        assert_eq!(html_to_text("a<!-- b"), "a");
        // A head without end shows its text rather than losing the document.
        assert_eq!(html_to_text("<head>text"), "text");
    }

    #[test]
    fn closing_tag_match_needs_a_name_boundary() {
        assert_eq!(html_to_text("<style>x</styles>y</style>z"), "z");
    }

    #[test]
    fn handles_multibyte_text() {
        assert_eq!(html_to_text("<p>Grüße, 日本語</p>"), "Grüße, 日本語");
    }

    #[test]
    fn is_linear_on_hostile_input() {
        let cases = [
            "<".repeat(300_000),
            "<a".repeat(150_000),
            "<head>".repeat(50_000),
            "<script>".repeat(40_000),
            "<!--".repeat(80_000),
            "&#x".repeat(100_000),
            "&".repeat(300_000),
            format!("{}{}", "<style>".repeat(20_000), "</style".repeat(20_000)),
        ];
        for case in &cases {
            let started = Instant::now();
            let _ = html_to_text(case);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "slow on {:?}",
                case.get(..20)
            );
        }
    }
}
