//! The fast path of [`super::from_str`]: a small, conservative reader for the plain
//! subset of YAML that desired-state files are written in, feeding serde directly.
//!
//! It never produces an error a user sees. Whenever the text leaves the subset below,
//! or the target type refuses a value, it *declines* and the caller reads the same text
//! again with serde-saphyr, which stays the authority for every error message and
//! position and for every construct outside the subset. So the fast path only has to be
//! right about the documents it accepts, and there it must give exactly what
//! serde-saphyr gives (the differential tests in `tests/it/spec_fast_path.rs` check this).
//!
//! The subset:
//! - printable ASCII and `\n` only (no tabs, `\r`, control or non-ASCII characters);
//! - one document whose root is a block mapping; an optional leading `---` line;
//! - block mappings whose keys are single-line plain words (`[A-Za-z0-9 _./@:-]`,
//!   starting with a letter, digit, `_` or `/`) or single-line quoted strings;
//! - block sequences of inline values (`- value`);
//! - inline values: single-line plain scalars, single-line quoted scalars with the
//!   common escapes, and flow sequences or mappings that close on the same line;
//! - comments and blank lines.
//!
//! Declined (left to serde-saphyr): anchors, aliases, tags, block scalars (`|`, `>`),
//! multi-line scalars, multi-line flow collections, complex keys, merge keys, empty or
//! null values, duplicate keys (compared by text, which is stricter than needed),
//! mappings over 64 entries, nesting deeper than 16 levels, directives and second
//! documents. Every loop consumes input, so the work is linear in the input size.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// Deepest block or flow nesting the fast path handles (serde-saphyr allows 64).
const MAX_DEPTH: usize = 16;
/// Most entries in one mapping the fast path handles (keeps duplicate checks linear).
const MAX_MAP_ENTRIES: usize = 64;
/// Longest implicit key YAML allows.
const MAX_KEY_LEN: usize = 1024;

/// Read `text` into `T`, or `None` when the fast path declines (see the module docs).
pub(super) fn from_str<T: de::DeserializeOwned>(text: &str) -> Option<T> {
    let root = parse(text).ok()?;
    T::deserialize(&root).ok()
}

/// The fast path gave up; the caller falls back to serde-saphyr.
#[derive(Debug)]
struct Decline;

type Parsed<T> = Result<T, Decline>;

/// A scalar: its decoded text and whether it was written plain (unquoted).
#[derive(Debug)]
struct Scalar<'a> {
    text: Cow<'a, str>,
    plain: bool,
}

impl Scalar<'_> {
    /// `~`, `null`, `Null` or `NULL` written plain (an empty plain value never parses).
    fn is_plain_null(&self) -> bool {
        self.plain && matches!(&*self.text, "" | "~" | "null" | "Null" | "NULL")
    }
}

/// A node of the document tree.
#[derive(Debug)]
enum Node<'a> {
    Scalar(Scalar<'a>),
    Seq(Vec<Node<'a>>),
    Map(Vec<(Scalar<'a>, Node<'a>)>),
}

/// One content line: its indentation and its text after the indentation.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    indent: usize,
    content: &'a str,
    next: usize,
}

struct Reader<'a> {
    src: &'a str,
    pos: usize,
    peeked: Option<Line<'a>>,
}

fn parse(text: &str) -> Parsed<Node<'_>> {
    if !text
        .bytes()
        .all(|b| b == b'\n' || (b' '..=b'~').contains(&b))
    {
        return Err(Decline);
    }
    let mut reader = Reader {
        src: text,
        pos: 0,
        peeked: None,
    };
    let first = reader.peek().ok_or(Decline)?;
    if let Some(rest) = first.content.strip_prefix("---") {
        if first.indent != 0 || !is_line_end(rest) {
            return Err(Decline);
        }
        reader.consume();
    }
    let line = reader.peek().ok_or(Decline)?;
    let root = reader.block_mapping(line.indent, 1)?;
    if reader.peek().is_some() {
        return Err(Decline);
    }
    Ok(root)
}

impl<'a> Reader<'a> {
    /// The next line that holds content (blank and comment-only lines are skipped).
    fn peek(&mut self) -> Option<Line<'a>> {
        if self.peeked.is_none() {
            self.peeked = self.next_content_line();
        }
        self.peeked
    }

    fn consume(&mut self) {
        if let Some(line) = self.peeked.take() {
            self.pos = line.next;
        }
    }

    fn next_content_line(&mut self) -> Option<Line<'a>> {
        while self.pos < self.src.len() {
            let rest = &self.src[self.pos..];
            let (line, next) = match rest.find('\n') {
                Some(end) => (&rest[..end], self.pos + end + 1),
                None => (rest, self.src.len()),
            };
            let content = line.trim_start_matches(' ');
            let content = content.trim_end_matches(' ');
            if content.is_empty() || content.starts_with('#') {
                self.pos = next;
                continue;
            }
            return Some(Line {
                indent: line.len() - line.trim_start_matches(' ').len(),
                content,
                next,
            });
        }
        None
    }

    fn block_mapping(&mut self, indent: usize, depth: usize) -> Parsed<Node<'a>> {
        if depth > MAX_DEPTH {
            return Err(Decline);
        }
        let mut entries: Vec<(Scalar<'a>, Node<'a>)> = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_seq_item(line.content) {
                return Err(Decline);
            }
            let (key, rest) = block_key(line.content)?;
            self.consume();
            let rest = rest.trim_start_matches(' ');
            let value = if rest.is_empty() || rest.starts_with('#') {
                match self.peek() {
                    Some(next) if next.indent > indent => {
                        if is_seq_item(next.content) {
                            self.block_seq(next.indent, depth + 1)?
                        } else {
                            self.block_mapping(next.indent, depth + 1)?
                        }
                    }
                    Some(next) if next.indent == indent && is_seq_item(next.content) => {
                        self.block_seq(indent, depth + 1)?
                    }
                    // An empty value is null: left to serde-saphyr.
                    _ => return Err(Decline),
                }
            } else {
                inline_value(rest, depth + 1)?
            };
            push_entry(&mut entries, key, value)?;
        }
        if entries.is_empty() {
            return Err(Decline);
        }
        Ok(Node::Map(entries))
    }

    fn block_seq(&mut self, indent: usize, depth: usize) -> Parsed<Node<'a>> {
        if depth > MAX_DEPTH {
            return Err(Decline);
        }
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent || !is_seq_item(line.content) {
                break;
            }
            if line.indent > indent {
                return Err(Decline);
            }
            self.consume();
            let rest = line.content[1..].trim_start_matches(' ');
            if rest.is_empty() || rest.starts_with('#') {
                return Err(Decline);
            }
            items.push(inline_value(rest, depth + 1)?);
        }
        // A more indented line after an item would continue it: not in the subset.
        if self.peek().is_some_and(|line| line.indent > indent) {
            return Err(Decline);
        }
        Ok(Node::Seq(items))
    }
}

fn push_entry<'a>(
    entries: &mut Vec<(Scalar<'a>, Node<'a>)>,
    key: Scalar<'a>,
    value: Node<'a>,
) -> Parsed<()> {
    if entries.len() >= MAX_MAP_ENTRIES || entries.iter().any(|(k, _)| k.text == key.text) {
        return Err(Decline);
    }
    entries.push((key, value));
    Ok(())
}

fn is_seq_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// Nothing but spaces and an optional comment (which must follow a space) remains.
fn is_line_end(rest: &str) -> bool {
    let trimmed = rest.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b' ' | b'_' | b'.' | b'/' | b'@' | b'-' | b':')
}

/// A plain key must read back as a string in every serde-saphyr code path.
fn plain_key(text: &str) -> Parsed<Scalar<'_>> {
    let first = text.as_bytes().first().copied().ok_or(Decline)?;
    if text.len() > MAX_KEY_LEN
        || !(first.is_ascii_alphanumeric() || first == b'_' || first == b'/')
        || resolve_plain(text) != Resolved::Str
    {
        return Err(Decline);
    }
    Ok(Scalar {
        text: Cow::Borrowed(text),
        plain: true,
    })
}

/// `key: rest` in block context; returns the key and the text after the colon.
fn block_key(content: &str) -> Parsed<(Scalar<'_>, &str)> {
    if content.starts_with(['"', '\'']) {
        let (key, after) = quoted(content)?;
        let rest = after.strip_prefix(':').ok_or(Decline)?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return Err(Decline);
        }
        return Ok((key, rest));
    }
    let bytes = content.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b':' && bytes.get(i + 1).is_none_or(|&n| n == b' ') {
            let key = plain_key(content[..i].trim_end_matches(' '))?;
            return Ok((key, &content[i + 1..]));
        }
        if !is_key_byte(b) {
            return Err(Decline);
        }
    }
    Err(Decline)
}

/// A value on the same line as its key or dash, in block context.
fn inline_value(text: &str, depth: usize) -> Parsed<Node<'_>> {
    match text.as_bytes()[0] {
        b'[' | b'{' => {
            let (node, after) = flow_node(text, depth)?;
            if !is_line_end(after) {
                return Err(Decline);
            }
            Ok(node)
        }
        b'"' | b'\'' => {
            let (scalar, after) = quoted(text)?;
            if !is_line_end(after) {
                return Err(Decline);
            }
            Ok(Node::Scalar(scalar))
        }
        _ => plain_block(text).map(Node::Scalar),
    }
}

/// Indicators that may not start a plain scalar (`-` is checked separately).
fn starts_indicator(b: u8) -> bool {
    matches!(
        b,
        b'?' | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    )
}

fn plain_start_ok(text: &str) -> bool {
    let bytes = text.as_bytes();
    match bytes.first() {
        None => false,
        Some(b'-') => bytes
            .get(1)
            .is_some_and(|&n| !matches!(n, b' ' | b',' | b'[' | b']' | b'{' | b'}')),
        Some(&b) => !starts_indicator(b),
    }
}

/// A single-line plain scalar in block context, up to a comment or the line end.
fn plain_block(text: &str) -> Parsed<Scalar<'_>> {
    if !plain_start_ok(text) {
        return Err(Decline);
    }
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            // `key: a: b` is an error; leave it to serde-saphyr.
            b':' if bytes.get(i + 1).is_none_or(|&n| n == b' ') => return Err(Decline),
            b'#' if bytes[i - 1] == b' ' => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    Ok(Scalar {
        text: Cow::Borrowed(text[..end].trim_end_matches(' ')),
        plain: true,
    })
}

/// A flow collection or scalar that ends on this line; returns it and the rest.
fn flow_node(text: &str, depth: usize) -> Parsed<(Node<'_>, &str)> {
    if depth > MAX_DEPTH {
        return Err(Decline);
    }
    match text.as_bytes().first() {
        Some(b'[') => {
            let mut items = Vec::new();
            let mut rest = text[1..].trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix(']') {
                return Ok((Node::Seq(items), after));
            }
            loop {
                let (item, after) = flow_node(rest, depth + 1)?;
                items.push(item);
                let after = after.trim_start_matches(' ');
                if let Some(after) = after.strip_prefix(']') {
                    return Ok((Node::Seq(items), after));
                }
                rest = after.strip_prefix(',').ok_or(Decline)?;
                rest = rest.trim_start_matches(' ');
                if rest.starts_with(']') {
                    return Err(Decline);
                }
            }
        }
        Some(b'{') => {
            let mut entries = Vec::new();
            let mut rest = text[1..].trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix('}') {
                return Ok((Node::Map(entries), after));
            }
            loop {
                let (key, after) = flow_key(rest)?;
                let (value, after) = flow_node(after.trim_start_matches(' '), depth + 1)?;
                push_entry(&mut entries, key, value)?;
                let after = after.trim_start_matches(' ');
                if let Some(after) = after.strip_prefix('}') {
                    return Ok((Node::Map(entries), after));
                }
                rest = after.strip_prefix(',').ok_or(Decline)?;
                rest = rest.trim_start_matches(' ');
                if rest.starts_with('}') {
                    return Err(Decline);
                }
            }
        }
        Some(b'"' | b'\'') => {
            let (scalar, after) = quoted(text)?;
            Ok((Node::Scalar(scalar), after))
        }
        _ => {
            let (scalar, after) = plain_flow(text)?;
            Ok((Node::Scalar(scalar), after))
        }
    }
}

/// `key: ` inside a flow mapping; returns the key and the text after `: `.
fn flow_key(text: &str) -> Parsed<(Scalar<'_>, &str)> {
    if text.starts_with(['"', '\'']) {
        let (key, after) = quoted(text)?;
        let after = after.strip_prefix(": ").ok_or(Decline)?;
        return Ok((key, after));
    }
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b':' {
            if bytes.get(i + 1) != Some(&b' ') {
                return Err(Decline);
            }
            let key = plain_key(text[..i].trim_end_matches(' '))?;
            return Ok((key, &text[i + 2..]));
        }
        if !is_key_byte(b) {
            return Err(Decline);
        }
    }
    Err(Decline)
}

/// A plain scalar inside a flow collection, up to `,`, `]` or `}`.
fn plain_flow(text: &str) -> Parsed<(Scalar<'_>, &str)> {
    if !plain_start_ok(text) {
        return Err(Decline);
    }
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b',' | b']' | b'}' => {
                let value = text[..i].trim_end_matches(' ');
                let scalar = Scalar {
                    text: Cow::Borrowed(value),
                    plain: true,
                };
                return Ok((scalar, &text[i..]));
            }
            b':' | b'#' | b'[' | b'{' => return Err(Decline),
            _ => {}
        }
    }
    // The collection does not close on this line.
    Err(Decline)
}

/// A single-line quoted scalar at the start of `text`; returns it and the rest.
fn quoted(text: &str) -> Parsed<(Scalar<'_>, &str)> {
    let bytes = text.as_bytes();
    let quote = bytes[0];
    let body = &text[1..];
    let mut owned: Option<String> = None;
    let mut start = 0;
    let mut i = 0;
    let b = body.as_bytes();
    while i < b.len() {
        let c = b[i];
        if quote == b'\'' && c == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                let buf = owned.get_or_insert_with(String::new);
                buf.push_str(&body[start..=i]);
                i += 2;
                start = i;
                continue;
            }
            return Ok((finish(body, start, i, owned), &body[i + 1..]));
        }
        if quote == b'"' && c == b'"' {
            return Ok((finish(body, start, i, owned), &body[i + 1..]));
        }
        if quote == b'"' && c == b'\\' {
            let decoded = match b.get(i + 1) {
                Some(b'\\') => '\\',
                Some(b'"') => '"',
                Some(b'/') => '/',
                Some(b'n') => '\n',
                Some(b't') => '\t',
                Some(b'r') => '\r',
                Some(b'0') => '\0',
                _ => return Err(Decline),
            };
            let buf = owned.get_or_insert_with(String::new);
            buf.push_str(&body[start..i]);
            buf.push(decoded);
            i += 2;
            start = i;
            continue;
        }
        i += 1;
    }
    // Not closed on this line: a multi-line scalar, or an error.
    Err(Decline)
}

fn finish(body: &str, start: usize, end: usize, owned: Option<String>) -> Scalar<'_> {
    let text = match owned {
        Some(mut buf) => {
            buf.push_str(&body[start..end]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(&body[start..end]),
    };
    Scalar { text, plain: false }
}

/// What serde-saphyr's untyped path (`deserialize_any`) makes of a plain scalar, for
/// the spellings the fast path is sure about; `Unsure` declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    Bool(bool),
    U64(u64),
    I64(i64),
    Str,
    Unsure,
}

/// Mirrors serde-saphyr 2.2 with Phoenix's options: null spellings, YAML 1.2 booleans,
/// then strings for underscored and leading-zero numbers, then integers and floats,
/// then strings. Anything that could be a number in a form not handled here is
/// `Unsure` (hexadecimal, octal, binary, explicit `+`, floats, `.inf`, `.nan`).
fn resolve_plain(t: &str) -> Resolved {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Unsure,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        _ => {}
    }
    if t.contains('_') {
        return Resolved::Str;
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    let Some(&first) = unsigned.as_bytes().first() else {
        return Resolved::Unsure;
    };
    if first == b'.' {
        // `.5`, `.inf`, `.nan` and friends.
        return Resolved::Unsure;
    }
    if !first.is_ascii_digit() {
        return Resolved::Str;
    }
    if unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if unsigned.len() > 1 && first == b'0' {
            return Resolved::Str;
        }
        if t.starts_with('+') {
            return Resolved::Unsure;
        }
        if t.starts_with('-') {
            return t.parse().map_or(Resolved::Unsure, Resolved::I64);
        }
        return t.parse().map_or(Resolved::Unsure, Resolved::U64);
    }
    let radix_prefix = first == b'0'
        && unsigned
            .as_bytes()
            .get(1)
            .is_some_and(|b| matches!(b, b'x' | b'X' | b'o' | b'O' | b'b' | b'B'));
    if radix_prefix
        || unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Resolved::Unsure;
    }
    Resolved::Str
}

/// Any refusal while deserializing; it only ever means "decline".
#[derive(Debug)]
struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("declined by the YAML fast path")
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Refused
    }
}

impl<'de> Node<'de> {
    /// The scalar's text unless it is a plain null spelling.
    fn string_scalar(&self) -> Result<&Scalar<'de>, Refused> {
        match self {
            Node::Scalar(s) if !s.is_plain_null() => Ok(s),
            _ => Err(Refused),
        }
    }

    /// The plain scalar's text, when it is a bare decimal integer.
    fn plain_integer(&self) -> Result<&str, Refused> {
        match self {
            Node::Scalar(s) if s.plain => match resolve_plain(&s.text) {
                Resolved::U64(_) | Resolved::I64(_) => Ok(&s.text),
                _ => Err(Refused),
            },
            _ => Err(Refused),
        }
    }
}

fn visit_text<'a, 'de, V: Visitor<'de>>(
    scalar: &'a Scalar<'de>,
    visitor: V,
) -> Result<V::Value, Refused> {
    match &scalar.text {
        Cow::Borrowed(text) => visitor.visit_borrowed_str(text),
        Cow::Owned(text) => visitor.visit_str(text),
    }
}

macro_rules! integer {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
                let value: $ty = self.plain_integer()?.parse().map_err(|_| Refused)?;
                visitor.$visit(value)
            }
        )*
    };
}

macro_rules! refuse {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Refused> {
                Err(Refused)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for &Node<'de> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self {
            Node::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter(),
            }),
            Node::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
            Node::Scalar(s) if !s.plain => visit_text(s, visitor),
            Node::Scalar(s) => match resolve_plain(&s.text) {
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::U64(n) => visitor.visit_u64(n),
                Resolved::I64(n) => visitor.visit_i64(n),
                Resolved::Str => visit_text(s, visitor),
                Resolved::Unsure => Err(Refused),
            },
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self {
            Node::Scalar(s) if s.plain => match resolve_plain(&s.text) {
                Resolved::Bool(b) => visitor.visit_bool(b),
                _ => Err(Refused),
            },
            _ => Err(Refused),
        }
    }

    integer! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    }

    refuse! {
        deserialize_i128, deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char,
        deserialize_bytes, deserialize_byte_buf, deserialize_unit,
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visit_text(self.string_scalar()?, visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visit_text(self.string_scalar()?, visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visit_text(self.string_scalar()?, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        // A plain null spelling is `None`; leave that to serde-saphyr.
        if let Node::Scalar(s) = self
            && s.is_plain_null()
        {
            return Err(Refused);
        }
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        // serde-saphyr gives its own `__yaml_*` wrappers (spans, anchors) a meaning.
        if name.starts_with("__yaml") {
            return Err(Refused);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self {
            Node::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter(),
            }),
            _ => Err(Refused),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self {
            Node::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
            _ => Err(Refused),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refused> {
        visitor.visit_enum(UnitVariant(self.string_scalar()?))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        // serde-saphyr still resolves every scalar of an ignored value (and refuses, for
        // example, `.inf`), so only skip a subtree whose scalars all resolve surely.
        if !self.resolves_surely() {
            return Err(Refused);
        }
        visitor.visit_unit()
    }
}

impl Node<'_> {
    /// Every plain scalar below resolves to something `deserialize_any` is sure of.
    fn resolves_surely(&self) -> bool {
        match self {
            Node::Scalar(s) => !s.plain || resolve_plain(&s.text) != Resolved::Unsure,
            Node::Seq(items) => items.iter().all(Node::resolves_surely),
            Node::Map(entries) => entries.iter().all(|(_, v)| v.resolves_surely()),
        }
    }
}

struct Seq<'a, 'de> {
    items: std::slice::Iter<'a, Node<'de>>,
}

impl<'a, 'de> de::SeqAccess<'de> for Seq<'a, 'de> {
    type Error = Refused;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Refused> {
        self.items
            .next()
            .map(|item| seed.deserialize(item))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a, 'de> {
    entries: std::slice::Iter<'a, (Scalar<'de>, Node<'de>)>,
    value: Option<&'a Node<'de>>,
}

impl<'a, 'de> de::MapAccess<'de> for Map<'a, 'de> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refused> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(Key(key)).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Refused> {
        seed.deserialize(self.value.take().ok_or(Refused)?)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A mapping key: always text (plain keys are only accepted when they resolve to a
/// string), so every `deserialize_*` hands the text over or refuses.
struct Key<'a, 'de>(&'a Scalar<'de>);

impl<'a, 'de> de::Deserializer<'de> for Key<'a, 'de> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visit_text(self.0, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        if name.starts_with("__yaml") {
            return Err(Refused);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visitor.visit_unit()
    }

    refuse! {
        deserialize_bool, deserialize_i8, deserialize_i16, deserialize_i32, deserialize_i64,
        deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32, deserialize_u64,
        deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char, deserialize_bytes,
        deserialize_byte_buf, deserialize_option, deserialize_unit, deserialize_seq,
        deserialize_map,
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visit_text(self.0, visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visit_text(self.0, visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visit_text(self.0, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refused> {
        visitor.visit_enum(UnitVariant(self.0))
    }
}

/// An enum written as its variant name: only unit variants are read here.
struct UnitVariant<'a, 'de>(&'a Scalar<'de>);

impl<'a, 'de> de::EnumAccess<'de> for UnitVariant<'a, 'de> {
    type Error = Refused;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Refused> {
        let variant = match &self.0.text {
            Cow::Borrowed(text) => {
                seed.deserialize(de::value::BorrowedStrDeserializer::<Refused>::new(text))?
            }
            Cow::Owned(text) => seed.deserialize(text.as_str().into_deserializer())?,
        };
        Ok((variant, self))
    }
}

impl<'a, 'de> de::VariantAccess<'de> for UnitVariant<'a, 'de> {
    type Error = Refused;

    fn unit_variant(self) -> Result<(), Refused> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _seed: S) -> Result<S::Value, Refused> {
        Err(Refused)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_like_serde_saphyr() {
        assert_eq!(resolve_plain("8080"), Resolved::U64(8080));
        assert_eq!(resolve_plain("-3"), Resolved::I64(-3));
        assert_eq!(resolve_plain("true"), Resolved::Bool(true));
        assert_eq!(resolve_plain("FALSE"), Resolved::Bool(false));
        for text in [
            "yes", "on", "no", "off", "0755", "1_000", "30s", "t3.micro", "-web",
        ] {
            assert_eq!(resolve_plain(text), Resolved::Str, "{text}");
        }
        for text in [
            "~", "null", "0x10", "+7", "1.5", "1e3", ".inf", "-.nan", "0o17",
        ] {
            assert_eq!(resolve_plain(text), Resolved::Unsure, "{text}");
        }
    }

    #[test]
    fn declines_outside_the_subset() {
        for text in [
            "a: &x 1\nb: *x\n",
            "a: !secret x\n",
            "a: |\n  text\n",
            "a:\n",
            "a: 1\na: 2\n",
            "a: b\n  c\n",
            "a: [1,\n  2]\n",
            "a: 1\n---\nb: 2\n",
            "a:\tb\n",
            "a: \"x\ny\"\n",
            "- a\n",
            "<<: {a: 1}\n",
        ] {
            assert!(parse(text).is_err(), "{text:?} should decline");
        }
    }
}
