//! Policy YAML source: parses a YAML document into JSON values and remembers where each value was written.
//!
//! [`load`] turns one YAML document into a [`serde_json::Value`] and a [`SourceMap`]. The value is then
//! deserialized into typed structs with `serde_path_to_error`; the error's path, printed with its
//! `Display` (`rules[2].match.path`), is handed to [`SourceMap::position`] to name the line and column.
//!
//! What is accepted, and what is refused with a [`YamlError`] carrying the position when there is one:
//! - exactly one document; no document (empty input, only comments, a bare `---`) or several is an error;
//! - mapping keys must be strings (quote `200:` as `"200":`); a duplicate key is an error at its second
//!   occurrence, naming the key; the merge key `<<` is not supported;
//! - scalars follow the YAML 1.2 core schema: quoted scalars are always strings (`"01"` stays `"01"`),
//!   plain ones resolve to null, booleans, integers (decimal, `0x`, `0o`; beyond `i64` up to `u64`, an
//!   error past that) and floats (`.nan` and `.inf` are errors: JSON has no such numbers);
//!   `!!str`-style core tags are honoured, any other tag is an error;
//! - anchors and aliases are resolved (the parser does it);
//! - at most [`MAX_INPUT_BYTES`] of input and [`MAX_DEPTH`] nested mappings and sequences.
//!
//! Positions are 1-based; columns count Unicode scalar values (a tab counts as one column).
//!
//! Hostile input must not crash the linter, and the parser (saphyr 0.3) recurses once per nesting level
//! and again when it copies an aliased node. Flow nesting (`[[[[`) it caps by itself at 255 levels;
//! block nesting and alias chains it does not. So before parsing, a linear pre-scan bounds block
//! nesting by indentation levels, and a document that uses aliases is first parsed with its aliases
//! neutralised, to measure what they would expand to (depth and size) before the real parse copies
//! anything.

use std::collections::HashMap;
use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYaml, Marker, Scalar, ScanError, YamlData};
use serde_json::{Map, Number, Value};

/// The largest document accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// The deepest nesting of mappings and sequences accepted (the root collection is level 1).
pub const MAX_DEPTH: usize = 64;

/// Indentation levels the pre-scan lets through; block nesting is at most twice this.
const MAX_INDENT_LEVELS: usize = MAX_DEPTH;

/// Nesting that alias expansion may reach before the real parse is refused (the converter then
/// enforces [`MAX_DEPTH`] with an exact position).
const MAX_ALIAS_DEPTH: usize = 2 * MAX_DEPTH;

/// Characters of scalar text (keys and values) a document may expand to through aliases.
const MAX_EXPANDED_CHARS: usize = 16 * 1024 * 1024;

/// Work allowed to [`SourceMap::position`] when a path is ambiguous (keys containing `.` or `[`).
const RESOLVE_BUDGET: usize = 4096;

/// Stands in for `*` while aliases are neutralised: starts a plain scalar, appears in no policy.
const ALIAS_STAND_IN: char = '\u{E000}';

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, in Unicode scalar values.
    pub column: u32,
}

impl Position {
    fn from_marker(marker: &Marker) -> Self {
        Position {
            line: saturating_u32(marker.line()),
            column: saturating_u32(marker.col().saturating_add(1)),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a document was refused, and where when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// What is wrong, without the position.
    pub message: String,
    /// Where, when the problem has a place in the text.
    pub position: Option<Position>,
}

impl YamlError {
    fn at(position: Position, message: impl Into<String>) -> Self {
        YamlError {
            message: message.into(),
            position: Some(position),
        }
    }

    fn nowhere(message: impl Into<String>) -> Self {
        YamlError {
            message: message.into(),
            position: None,
        }
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "line {}, column {}: {}", p.line, p.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for YamlError {}

/// One step of a path into the document, for [`SourceMap::position_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSegment<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A sequence index, from 0.
    Index(usize),
}

/// Where each value of a loaded document was written: the key of a mapping entry, the item of a
/// sequence, the start of the root.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    /// `nodes[0]` is the root; empty for a default map.
    nodes: Vec<MapNode>,
}

#[derive(Debug, Clone)]
struct MapNode {
    position: Position,
    children: Children,
}

#[derive(Debug, Clone)]
enum Children {
    Leaf,
    Seq(Vec<usize>),
    Map(HashMap<String, usize>),
}

/// How far a path string was followed.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    node: usize,
    depth: usize,
    complete: bool,
}

impl SourceMap {
    /// Position of the value at `path`, or of its nearest written ancestor.
    ///
    /// `path` is what `serde_path_to_error::Path`'s `Display` prints: keys joined by `.`, indices in
    /// brackets with no dot before them (`rules[2].match.path`, `[0].name` under a root sequence), and
    /// `"."` (or `""`) for the root. A key that itself contains `.` or `[` is found when the document
    /// has no other reading of the path. `None` only for an empty map.
    pub fn position(&self, path: &str) -> Option<Position> {
        let root = self.nodes.first()?;
        if path.is_empty() || path == "." {
            return Some(root.position);
        }
        let mut budget = RESOLVE_BUDGET;
        let found = self.resolve(0, path, true, &mut budget);
        self.nodes.get(found.node).map(|n| n.position)
    }

    /// Same, from structured segments.
    pub fn position_of(&self, segments: &[PathSegment]) -> Option<Position> {
        let mut current = self.nodes.first()?;
        for segment in segments {
            let next = match (&current.children, segment) {
                (Children::Seq(items), PathSegment::Index(i)) => items.get(*i),
                (Children::Map(keys), PathSegment::Key(k)) => keys.get(*k),
                _ => None,
            };
            match next.and_then(|&i| self.nodes.get(i)) {
                Some(node) => current = node,
                None => break,
            }
        }
        Some(current.position)
    }

    /// Same, from the path of a `serde_path_to_error` error, with no ambiguity about keys that
    /// contain `.` or `[`.
    pub fn position_of_error_path(&self, path: &serde_path_to_error::Path) -> Option<Position> {
        let mut segments = Vec::new();
        for segment in path {
            match segment {
                serde_path_to_error::Segment::Seq { index } => segments.push(PathSegment::Index(*index)),
                serde_path_to_error::Segment::Map { key }
                | serde_path_to_error::Segment::Enum { variant: key } => segments.push(PathSegment::Key(key)),
                _ => break,
            }
        }
        self.position_of(&segments)
    }

    fn resolve(&self, node: usize, rest: &str, first: bool, budget: &mut usize) -> Resolved {
        let here = Resolved {
            node,
            depth: 0,
            complete: rest.is_empty(),
        };
        if rest.is_empty() || *budget == 0 {
            return here;
        }
        *budget -= 1;
        let Some(entry) = self.nodes.get(node) else {
            return here;
        };
        let deeper = |sub: Resolved| Resolved {
            node: sub.node,
            depth: sub.depth + 1,
            complete: sub.complete,
        };
        match &entry.children {
            Children::Leaf => here,
            Children::Seq(items) => {
                let Some(inner) = rest.strip_prefix('[') else {
                    return here;
                };
                let Some((digits, after)) = inner.split_once(']') else {
                    return here;
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return here;
                }
                match digits.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    Some(&child) => deeper(self.resolve(child, after, false, budget)),
                    None => here,
                }
            }
            Children::Map(keys) => {
                let body = if first {
                    rest
                } else {
                    match rest.strip_prefix('.') {
                        Some(body) => body,
                        None => return here,
                    }
                };
                let mut best = here;
                let ends = body
                    .char_indices()
                    .filter(|&(_, c)| c == '.' || c == '[')
                    .map(|(i, _)| i)
                    .chain(std::iter::once(body.len()));
                for end in ends {
                    let (Some(key), Some(after)) = (body.get(..end), body.get(end..)) else {
                        continue;
                    };
                    let Some(&child) = keys.get(key) else {
                        continue;
                    };
                    let candidate = deeper(self.resolve(child, after, false, budget));
                    if (candidate.complete, candidate.depth) > (best.complete, best.depth) {
                        best = candidate;
                    }
                    if best.complete {
                        break;
                    }
                }
                best
            }
        }
    }
}

/// Parse one YAML document.
///
/// # Errors
/// A [`YamlError`] for input that is not exactly one well-formed document within the limits and rules
/// of this module (see the module documentation), with the position when the problem has one.
pub fn load(src: &str) -> Result<(Value, SourceMap), YamlError> {
    if src.len() > MAX_INPUT_BYTES {
        return Err(YamlError::nowhere(format!(
            "the document is {} bytes long; at most {MAX_INPUT_BYTES} bytes (1 MiB) are accepted",
            src.len()
        )));
    }
    let chars: Vec<char> = src.chars().collect();
    check_indentation(&chars)?;
    let properties = scan_properties(&chars);
    if !properties.aliases.is_empty() {
        check_aliases(&chars, &properties)?;
    }
    let docs = parse(src, &chars)?;
    let root = single_document(&docs, &chars)?;
    let mut converter = Converter {
        chars: &chars,
        map: SourceMap::default(),
        expanded: 0,
    };
    let root_slot = converter.add_node(root);
    let value = converter.convert(root, root_slot, 0)?;
    Ok((value, converter.map))
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_break(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// saphyr's rule for anchor and alias names.
fn is_anchor_char(c: char) -> bool {
    !is_blank(c) && !is_break(c) && !matches!(c, '\0' | '\u{FEFF}' | ',' | '[' | ']' | '{' | '}')
}

/// Line and column of the character at `index`, counted the way saphyr counts them.
fn position_at(chars: &[char], index: usize) -> Position {
    let mut line = 1usize;
    let mut column = 0usize;
    let mut previous = '\0';
    for &c in chars.iter().take(index) {
        match c {
            '\n' if previous == '\r' => {}
            '\n' | '\r' => {
                line += 1;
                column = 0;
            }
            '\u{FEFF}' => {}
            _ => column += 1,
        }
        previous = c;
    }
    Position {
        line: saturating_u32(line),
        column: saturating_u32(column + 1),
    }
}

/// Bounds block nesting before saphyr's recursive parser sees the text.
///
/// Every block mapping or sequence saphyr opens sits on its own entry of a strictly increasing stack
/// of indentation columns (an indentless sequence shares its parent mapping's entry), and each such
/// column is where a line's content starts or where content follows a `- `, `? ` or `: ` indicator.
/// Tracking those columns the same way (pop what is deeper than a line's first column, push what is
/// deeper than the top) gives a stack that holds at least all of saphyr's: lines inside scalars and
/// flow collections only ever add columns, since saphyr insists they be indented past the current
/// block. So more than [`MAX_INDENT_LEVELS`] entries here bounds nothing the document needs, and at
/// most that many bounds saphyr's block nesting to twice as many.
fn check_indentation(chars: &[char]) -> Result<(), YamlError> {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\n');
    let n = chars.len();
    let mut levels: Vec<usize> = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    while i < n {
        let mut start = i;
        while at(start) == '\u{FEFF}' && start < n {
            start += 1;
        }
        let mut end = start;
        while end < n && !is_break(at(end)) {
            end += 1;
        }
        let mut j = start;
        while j < end && is_blank(at(j)) {
            j += 1;
        }
        if j < end && at(j) != '#' {
            let first = j - start;
            while levels.last().is_some_and(|&top| top > first) {
                levels.pop();
            }
            push_level(&mut levels, first, line)?;
            let mut k = j;
            loop {
                let width = if k == start
                    && at(k) == '-'
                    && at(k + 1) == '-'
                    && at(k + 2) == '-'
                    && (k + 3 >= end || is_blank(at(k + 3)))
                {
                    3
                } else if matches!(at(k), '-' | '?' | ':') && (k + 1 >= end || is_blank(at(k + 1))) {
                    1
                } else {
                    break;
                };
                k += width;
                while k < end && is_blank(at(k)) {
                    k += 1;
                }
                if k >= end || at(k) == '#' {
                    break;
                }
                push_level(&mut levels, k - start, line)?;
            }
        }
        i = end;
        if i < n {
            i += if at(i) == '\r' && at(i + 1) == '\n' { 2 } else { 1 };
            line += 1;
        }
    }
    Ok(())
}

fn push_level(levels: &mut Vec<usize>, column: usize, line: usize) -> Result<(), YamlError> {
    if levels.last().is_none_or(|&top| column > top) {
        if levels.len() == MAX_INDENT_LEVELS {
            return Err(YamlError::at(
                Position {
                    line: saturating_u32(line),
                    column: saturating_u32(column + 1),
                },
                too_deep_message(),
            ));
        }
        levels.push(column);
    }
    Ok(())
}

fn too_deep_message() -> String {
    format!("nesting deeper than {MAX_DEPTH} levels is not allowed")
}

/// An `&anchor` or `*alias` property as it may appear in the text.
#[derive(Debug)]
struct Property {
    /// Character index of the `&` or `*`.
    index: usize,
    name: String,
}

#[derive(Debug, Default)]
struct Properties {
    anchors: Vec<Property>,
    aliases: Vec<Property>,
}

/// Every place that may be an anchor or alias: a superset of saphyr's (those inside quoted
/// scalars or comments are included too), which only ever makes [`check_aliases`] stricter.
fn scan_properties(chars: &[char]) -> Properties {
    let mut found = Properties::default();
    for (index, &c) in chars.iter().enumerate() {
        if c != '&' && c != '*' {
            continue;
        }
        let separated = index == 0
            || chars.get(index - 1).is_some_and(|&p| {
                is_blank(p)
                    || is_break(p)
                    || matches!(
                        p,
                        '\u{FEFF}' | '[' | ']' | '{' | '}' | ',' | ':' | '"' | '\'' | '?' | '-' | '|' | '>'
                    )
            });
        if !separated {
            continue;
        }
        let name: String = chars
            .iter()
            .skip(index + 1)
            .take_while(|&&c| is_anchor_char(c))
            .collect();
        if name.is_empty() {
            continue;
        }
        let property = Property { index, name };
        if c == '&' {
            found.anchors.push(property);
        } else {
            found.aliases.push(property);
        }
    }
    found
}

/// One node of the alias-free parse, in document order.
struct FlatNode {
    start: usize,
    depth: usize,
    parent: Option<usize>,
    /// Characters of scalar text written at this node.
    own: usize,
}

/// Refuses documents whose aliases would expand past [`MAX_ALIAS_DEPTH`] levels or
/// [`MAX_EXPANDED_CHARS`] characters, without letting saphyr expand them.
///
/// Each possible alias is replaced by a plain scalar of the same length, so the parse copies
/// nothing. Every node starts where its first property or content starts, so a property at index
/// `p` belongs to the last node (in document order) that starts at or before `p`: exactly for real
/// ones, an enclosing node for the others, which only overestimates. Walking the nodes in the order
/// saphyr completes them, an anchor's height and size become available to later aliases of its
/// name just as saphyr registers anchored nodes when they are complete.
fn check_aliases(chars: &[char], properties: &Properties) -> Result<(), YamlError> {
    let mut neutral = chars.to_vec();
    for alias in &properties.aliases {
        if let Some(c) = neutral.get_mut(alias.index) {
            *c = ALIAS_STAND_IN;
        }
    }
    let neutral: String = neutral.into_iter().collect();
    let docs = parse(&neutral, chars)?;

    let (flat, completion) = flatten(&docs);
    let mut by_start: Vec<usize> = (0..flat.len()).collect();
    by_start.sort_by_key(|&i| (flat.get(i).map_or(0, |f| f.start), i));
    let mut latest = Vec::with_capacity(by_start.len());
    let mut running = 0usize;
    for &i in &by_start {
        running = running.max(i);
        latest.push(running);
    }
    let owner = |p: usize| -> Option<usize> {
        let k = by_start.partition_point(|&i| flat.get(i).is_some_and(|f| f.start <= p));
        k.checked_sub(1).and_then(|k| latest.get(k).copied())
    };
    let mut anchors_at: HashMap<usize, Vec<&str>> = HashMap::new();
    for anchor in &properties.anchors {
        if let Some(node) = owner(anchor.index) {
            anchors_at.entry(node).or_default().push(&anchor.name);
        }
    }
    let mut aliases_at: HashMap<usize, Vec<&Property>> = HashMap::new();
    for alias in &properties.aliases {
        if let Some(node) = owner(alias.index) {
            aliases_at.entry(node).or_default().push(alias);
        }
    }

    let mut child_height = vec![0usize; flat.len()];
    let mut child_size = vec![0usize; flat.len()];
    // Height and size of the largest complete anchored node of each name.
    let mut anchored: HashMap<&str, (usize, usize)> = HashMap::new();
    for &idx in &completion {
        let Some(node) = flat.get(idx) else {
            continue;
        };
        let mut extra_height = 0usize;
        let mut extra_size = 0usize;
        let mut first_alias = None;
        for alias in aliases_at.get(&idx).into_iter().flatten() {
            let Some(&(height, size)) = anchored.get(alias.name.as_str()) else {
                continue;
            };
            first_alias.get_or_insert(alias.index);
            if node.depth - 1 + height > MAX_ALIAS_DEPTH {
                return Err(YamlError::at(
                    position_at(chars, alias.index),
                    format!(
                        "alias `*{}` expands to nesting deeper than {MAX_DEPTH} levels, which is not allowed",
                        alias.name
                    ),
                ));
            }
            extra_height = extra_height.max(height);
            extra_size = extra_size.saturating_add(size);
        }
        let height = (1 + child_height.get(idx).copied().unwrap_or(0)).max(extra_height);
        let size = child_size
            .get(idx)
            .copied()
            .unwrap_or(0)
            .saturating_add(node.own)
            .saturating_add(extra_size);
        if size > MAX_EXPANDED_CHARS {
            let index = first_alias.unwrap_or(node.start);
            return Err(YamlError::at(
                position_at(chars, index),
                format!(
                    "aliases expand the document past {MAX_EXPANDED_CHARS} characters, which is not allowed"
                ),
            ));
        }
        if let Some(parent) = node.parent {
            if let Some(h) = child_height.get_mut(parent) {
                *h = (*h).max(height);
            }
            if let Some(s) = child_size.get_mut(parent) {
                *s = s.saturating_add(size);
            }
        }
        for &name in anchors_at.get(&idx).into_iter().flatten() {
            let entry = anchored.entry(name).or_insert((0, 0));
            entry.0 = entry.0.max(height);
            entry.1 = entry.1.max(size);
        }
    }
    Ok(())
}

/// The nodes of `docs` in document order (keys before their values), and the order in which they
/// complete; without recursion, as the alias-free parse may still be a few hundred levels deep.
fn flatten(docs: &[MarkedYaml<'_>]) -> (Vec<FlatNode>, Vec<usize>) {
    enum Step<'n, 'i> {
        Enter(&'n MarkedYaml<'i>, usize, Option<usize>),
        Exit(usize),
    }
    let mut flat = Vec::new();
    let mut completion = Vec::new();
    let mut work: Vec<Step<'_, '_>> = docs.iter().rev().map(|d| Step::Enter(d, 1, None)).collect();
    while let Some(step) = work.pop() {
        match step {
            Step::Enter(node, depth, parent) => {
                let idx = flat.len();
                // A tag wraps its node, whose own span is left empty: the wrapper stands for both.
                let mut data = &node.data;
                while let YamlData::Tagged(_, inner) = data {
                    data = &inner.data;
                }
                let own = match data {
                    YamlData::Sequence(_) | YamlData::Mapping(_) => 0,
                    _ => node.span.end.index().saturating_sub(node.span.start.index()),
                };
                flat.push(FlatNode {
                    start: node.span.start.index(),
                    depth,
                    parent,
                    own,
                });
                work.push(Step::Exit(idx));
                match data {
                    YamlData::Sequence(items) => {
                        for item in items.iter().rev() {
                            work.push(Step::Enter(item, depth + 1, Some(idx)));
                        }
                    }
                    YamlData::Mapping(entries) => {
                        let entries: Vec<_> = entries.iter().collect();
                        for (key, value) in entries.into_iter().rev() {
                            work.push(Step::Enter(value, depth + 1, Some(idx)));
                            work.push(Step::Enter(key, depth + 1, Some(idx)));
                        }
                    }
                    _ => {}
                }
            }
            Step::Exit(idx) => completion.push(idx),
        }
    }
    (flat, completion)
}

/// saphyr, with its errors turned into [`YamlError`]s (`chars` is the original text, for quoting).
fn parse<'t>(text: &'t str, chars: &[char]) -> Result<Vec<MarkedYaml<'t>>, YamlError> {
    // saphyr is not known to panic, but a linter must survive a parser bug where unwinding exists.
    match std::panic::catch_unwind(|| MarkedYaml::load_from_str(text)) {
        Ok(Ok(docs)) => Ok(docs),
        Ok(Err(e)) => Err(scan_error(chars, &e)),
        Err(_) => Err(YamlError::nowhere("the YAML parser failed on this document")),
    }
}

fn scan_error(chars: &[char], e: &ScanError) -> YamlError {
    let marker = e.marker();
    let position = Position::from_marker(marker);
    let info = e.info();
    let message = if info.contains("duplicated key") {
        format!("duplicate key {}", quote_source(chars, marker.index()))
    } else if info.contains("recursion limit") {
        format!(
            "{} (the parser stopped at 255 nested brackets)",
            too_deep_message()
        )
    } else if info.contains("alias expansion exceeded") {
        "aliases expand to too many nodes, which is not allowed".to_owned()
    } else {
        info.to_owned()
    };
    YamlError::at(position, message)
}

/// Skips `&anchor` and `!tag` properties (and the blanks after them) from `index`.
fn skip_properties(chars: &[char], mut index: usize) -> (usize, Option<String>) {
    let mut tag = None;
    while let Some(&c) = chars.get(index) {
        if c != '&' && c != '!' {
            break;
        }
        let start = index;
        while chars.get(index).is_some_and(|&c| !is_blank(c) && !is_break(c)) {
            index += 1;
        }
        if c == '!' {
            tag = Some(chars.get(start..index).unwrap_or_default().iter().collect());
        }
        while chars.get(index).is_some_and(|&c| is_blank(c)) {
            index += 1;
        }
    }
    (index, tag)
}

/// The scalar written at `index` (a key, usually), as written, in backquotes, for messages.
fn quote_source(chars: &[char], index: usize) -> String {
    let (start, _) = skip_properties(chars, index);
    let mut end = start;
    match chars.get(start) {
        Some(&q @ ('"' | '\'')) => {
            end += 1;
            while let Some(&c) = chars.get(end) {
                end += 1;
                if c == '\\' && q == '"' {
                    end += 1;
                } else if c == q {
                    if q == '\'' && chars.get(end) == Some(&'\'') {
                        end += 1;
                    } else {
                        break;
                    }
                }
            }
        }
        _ => {
            while let Some(&c) = chars.get(end) {
                let next = chars.get(end + 1).copied().unwrap_or('\n');
                let ends_key =
                    c == ':' && (is_blank(next) || is_break(next) || matches!(next, ',' | ']' | '}'));
                if is_break(c)
                    || ends_key
                    || matches!(c, ',' | ']' | '}')
                    || (c == '#' && end > start && chars.get(end - 1).is_some_and(|&p| is_blank(p)))
                {
                    break;
                }
                end += 1;
            }
        }
    }
    let text: String = chars
        .get(start..end.min(chars.len()))
        .unwrap_or_default()
        .iter()
        .collect();
    format!("`{}`", shorten(text.trim_end()))
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 80;
    if text.chars().count() <= LIMIT {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(LIMIT).collect();
        short.push('…');
        short
    }
}

fn single_document<'d, 'i>(
    docs: &'d [MarkedYaml<'i>],
    chars: &[char],
) -> Result<&'d MarkedYaml<'i>, YamlError> {
    let Some(root) = docs.first() else {
        return Err(YamlError::nowhere(
            "no YAML document found (the input is empty or only comments)",
        ));
    };
    if let Some(second) = docs.get(1) {
        return Err(YamlError::at(
            Position::from_marker(&second.span.start),
            "a second YAML document starts here; a policy file must hold exactly one",
        ));
    }
    if matches!(root.data, YamlData::Value(Scalar::Null)) {
        let start = root.span.start.index();
        let end = root.span.end.index();
        let text: String = chars
            .get(start..end.min(chars.len()))
            .unwrap_or_default()
            .iter()
            .collect();
        let text = text.trim();
        if text.is_empty() || text.starts_with("...") {
            return Err(YamlError::at(
                Position::from_marker(&root.span.start),
                "the document is empty",
            ));
        }
    }
    Ok(root)
}

/// Builds the JSON value and the source map from saphyr's tree, depth-first, at most [`MAX_DEPTH`]
/// deep.
struct Converter<'c> {
    chars: &'c [char],
    map: SourceMap,
    /// Characters of strings produced so far (aliases may repeat text).
    expanded: usize,
}

impl Converter<'_> {
    fn add_node(&mut self, node: &MarkedYaml<'_>) -> usize {
        self.map.nodes.push(MapNode {
            position: Position::from_marker(&node.span.start),
            children: Children::Leaf,
        });
        self.map.nodes.len() - 1
    }

    fn set_children(&mut self, slot: usize, children: Children) {
        if let Some(node) = self.map.nodes.get_mut(slot) {
            node.children = children;
        }
    }

    fn position(node: &MarkedYaml<'_>) -> Position {
        Position::from_marker(&node.span.start)
    }

    fn count_text(&mut self, node: &MarkedYaml<'_>, text: &str) -> Result<(), YamlError> {
        self.expanded = self.expanded.saturating_add(text.chars().count());
        if self.expanded > MAX_EXPANDED_CHARS {
            return Err(YamlError::at(
                Self::position(node),
                format!(
                    "aliases expand the document past {MAX_EXPANDED_CHARS} characters, which is not allowed"
                ),
            ));
        }
        Ok(())
    }

    /// `depth` counts the collections enclosing `node`.
    fn convert(&mut self, node: &MarkedYaml<'_>, slot: usize, depth: usize) -> Result<Value, YamlError> {
        match &node.data {
            YamlData::Value(scalar) => self.scalar(node, scalar),
            YamlData::Sequence(items) => {
                let depth = self.enter(node, depth)?;
                let mut values = Vec::with_capacity(items.len());
                let mut slots = Vec::with_capacity(items.len());
                for item in items {
                    let child = self.add_node(item);
                    slots.push(child);
                    values.push(self.convert(item, child, depth)?);
                }
                self.set_children(slot, Children::Seq(slots));
                Ok(Value::Array(values))
            }
            YamlData::Mapping(entries) => {
                let depth = self.enter(node, depth)?;
                let mut object = Map::new();
                let mut slots = HashMap::with_capacity(entries.len());
                for (key_node, value_node) in entries {
                    let key = self.key(key_node)?;
                    self.count_text(key_node, &key)?;
                    let child = self.add_node(key_node);
                    let value = self.convert(value_node, child, depth)?;
                    if object.insert(key.clone(), value).is_some() {
                        return Err(YamlError::at(
                            Self::position(key_node),
                            format!("duplicate key `{}`", shorten(&key)),
                        ));
                    }
                    slots.insert(key, child);
                }
                self.set_children(slot, Children::Map(slots));
                Ok(Value::Object(object))
            }
            YamlData::Tagged(..) => {
                let (_, tag) = skip_properties(self.chars, node.span.start.index());
                Err(YamlError::at(
                    Self::position(node),
                    format!(
                        "the tag `{}` is not supported (only the core `!!str`, `!!int`, ... tags are)",
                        shorten(tag.as_deref().unwrap_or("!"))
                    ),
                ))
            }
            YamlData::BadValue => {
                let (_, tag) = skip_properties(self.chars, node.span.start.index());
                let message = match tag {
                    Some(tag) => format!("the value does not match its tag `{}`", shorten(&tag)),
                    None => "invalid value".to_owned(),
                };
                Err(YamlError::at(Self::position(node), message))
            }
            YamlData::Alias(_) | YamlData::Representation(..) => Err(YamlError::at(
                Self::position(node),
                "alias refers to an anchor that is not complete here",
            )),
        }
    }

    fn enter(&self, node: &MarkedYaml<'_>, depth: usize) -> Result<usize, YamlError> {
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(YamlError::at(Self::position(node), too_deep_message()));
        }
        Ok(depth)
    }

    fn key(&self, node: &MarkedYaml<'_>) -> Result<String, YamlError> {
        let kind = match &node.data {
            YamlData::Value(Scalar::String(s)) => {
                if s.as_ref() == "<<" {
                    return Err(YamlError::at(
                        Self::position(node),
                        "merge keys (`<<`) are not supported; write the entries out",
                    ));
                }
                return Ok(s.to_string());
            }
            YamlData::Value(Scalar::Null) => "null",
            YamlData::Value(Scalar::Boolean(_)) => "a boolean",
            YamlData::Value(Scalar::Integer(_)) => "an integer",
            YamlData::Value(Scalar::FloatingPoint(_)) => "a float",
            YamlData::Sequence(_) => "a sequence",
            YamlData::Mapping(_) => "a mapping",
            _ => "not a string",
        };
        let shown = match &node.data {
            YamlData::Sequence(_) | YamlData::Mapping(_) => String::new(),
            _ => format!(" {}", quote_source(self.chars, node.span.start.index())),
        };
        Err(YamlError::at(
            Self::position(node),
            format!(
                "mapping keys must be strings, but the key{shown} is {kind} (quote it to make it a string)"
            ),
        ))
    }

    fn scalar(&mut self, node: &MarkedYaml<'_>, scalar: &Scalar<'_>) -> Result<Value, YamlError> {
        match scalar {
            Scalar::Null => Ok(Value::Null),
            Scalar::Boolean(b) => Ok(Value::Bool(*b)),
            Scalar::Integer(i) => Ok(Value::from(*i)),
            Scalar::FloatingPoint(f) => {
                let (tag, text) = self.source_text(node);
                if tag.is_none() && is_decimal_integer(&text) {
                    // saphyr reads integers that do not fit in i64 as floats.
                    return match text.strip_prefix('+').unwrap_or(&text).parse::<u64>() {
                        Ok(u) => Ok(Value::from(u)),
                        Err(_) => Err(out_of_range(node, &text)),
                    };
                }
                Number::from_f64(f.0).map(Value::Number).ok_or_else(|| {
                    YamlError::at(
                        Self::position(node),
                        format!(
                            "`{}` is not a finite number; NaN and infinities are not allowed",
                            shorten(&text)
                        ),
                    )
                })
            }
            Scalar::String(s) => {
                self.count_text(node, s)?;
                if (s.starts_with("0x") || s.starts_with("0o")) && s.len() > 2 {
                    let digits = s.get(2..).unwrap_or_default();
                    let radix = if s.starts_with("0x") { 16 } else { 8 };
                    let (tag, text) = self.source_text(node);
                    if tag.is_none() && text == **s && digits.chars().all(|c| c.is_digit(radix)) {
                        return Err(out_of_range(node, s));
                    }
                }
                Ok(Value::String(s.to_string()))
            }
        }
    }

    /// The tag and the text of a scalar as written, properties left out.
    fn source_text(&self, node: &MarkedYaml<'_>) -> (Option<String>, String) {
        let (start, tag) = skip_properties(self.chars, node.span.start.index());
        let end = node.span.end.index().min(self.chars.len());
        let text: String = self
            .chars
            .get(start..end.max(start))
            .unwrap_or_default()
            .iter()
            .collect();
        (tag, text.trim().to_owned())
    }
}

fn out_of_range(node: &MarkedYaml<'_>, text: &str) -> YamlError {
    YamlError::at(
        Converter::position(node),
        format!("the integer `{}` is out of range", shorten(text)),
    )
}

fn is_decimal_integer(text: &str) -> bool {
    let digits = text
        .strip_prefix('-')
        .or_else(|| text.strip_prefix('+'))
        .unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn pos(line: u32, column: u32) -> Option<Position> {
        Some(Position { line, column })
    }

    fn ok(src: &str) -> (Value, SourceMap) {
        match load(src) {
            Ok(loaded) => loaded,
            Err(e) => panic!("{src:?} was refused: {e}"),
        }
    }

    fn err(src: &str) -> YamlError {
        match load(src) {
            Ok((value, _)) => panic!("{src:?} was accepted as {value}"),
            Err(e) => e,
        }
    }

    const POLICY: &str = "\
# scope policy
version: 1
rules:
  - name: read
    match:
      path: /accounts
      methods: [GET, HEAD]
    scopes:
      - accounts:read
  - name: write
    match: {path: /payments, methods: [POST]}
    scopes: [payments:write]
";

    #[test]
    fn nested_keys_and_sequence_items_have_positions() {
        let (value, map) = ok(POLICY);
        assert_eq!(value["rules"][1]["match"]["methods"][0], json!("POST"));
        assert_eq!(map.position("."), pos(2, 1));
        assert_eq!(map.position(""), pos(2, 1));
        assert_eq!(map.position("version"), pos(2, 1));
        assert_eq!(map.position("rules"), pos(3, 1));
        // A sequence item is where the item starts; a mapping entry is where its key is.
        assert_eq!(map.position("rules[0]"), pos(4, 5));
        assert_eq!(map.position("rules[0].name"), pos(4, 5));
        assert_eq!(map.position("rules[0].match"), pos(5, 5));
        assert_eq!(map.position("rules[0].match.path"), pos(6, 7));
        assert_eq!(map.position("rules[0].match.methods[1]"), pos(7, 22));
        assert_eq!(map.position("rules[0].scopes[0]"), pos(9, 9));
        assert_eq!(map.position("rules[1]"), pos(10, 5));
        assert_eq!(map.position("rules[1].match.path"), pos(11, 13));
        assert_eq!(map.position("rules[1].match.methods[0]"), pos(11, 40));
        assert_eq!(map.position("rules[1].scopes[0]"), pos(12, 14));
        // Nothing written there: the nearest written ancestor.
        assert_eq!(map.position("rules[1].match.headers"), pos(11, 5));
        assert_eq!(map.position("rules[7].name"), pos(3, 1));
        assert_eq!(map.position("rules[0].name.deeper[3]"), pos(4, 5));
        assert_eq!(map.position("nope"), pos(2, 1));
        assert_eq!(map.position("rules.0"), pos(3, 1));
        assert_eq!(
            map.position_of(&[
                PathSegment::Key("rules"),
                PathSegment::Index(1),
                PathSegment::Key("match"),
                PathSegment::Key("methods"),
                PathSegment::Index(0),
            ]),
            pos(11, 40)
        );
        assert_eq!(map.position_of(&[]), pos(2, 1));
        assert_eq!(
            map.position_of(&[PathSegment::Key("rules"), PathSegment::Key("0")]),
            pos(3, 1)
        );
        assert_eq!(SourceMap::default().position("."), None);
        assert_eq!(SourceMap::default().position_of(&[]), None);
    }

    #[test]
    fn root_sequence_and_scalar_roots() {
        let (value, map) = ok("- a: 1\n- [x, y]\n");
        assert_eq!(value, json!([{"a": 1}, ["x", "y"]]));
        assert_eq!(map.position("[0].a"), pos(1, 3));
        assert_eq!(map.position("[1][1]"), pos(2, 7));
        let (value, map) = ok("  hello\n");
        assert_eq!(value, json!("hello"));
        assert_eq!(map.position("."), pos(1, 3));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Policy {
        version: u32,
        rules: Vec<Rule>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rule {
        name: String,
        #[serde(rename = "match")]
        matcher: Match,
        scopes: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Match {
        path: String,
        methods: Vec<String>,
    }

    /// What the linter does: deserialize, print the error's path, look it up.
    fn lint(src: &str) -> (String, Option<Position>, Option<Position>) {
        let (value, map) = ok(src);
        let e = serde_path_to_error::deserialize::<_, Policy>(value).unwrap_err();
        let path = e.path().to_string();
        (
            path.clone(),
            map.position(&path),
            map.position_of_error_path(e.path()),
        )
    }

    #[test]
    fn serde_path_to_error_paths_map_back_to_the_source() {
        assert!(serde_path_to_error::deserialize::<_, Policy>(ok(POLICY).0).is_ok());

        // An unknown field: the path ends with the field, and the position is its key.
        let src = POLICY.replace(
            "      path: /accounts\n",
            "      path: /accounts\n      pathh: /x\n",
        );
        let (path, at, at_structured) = lint(&src);
        assert_eq!(path, "rules[0].match.pathh");
        assert_eq!(at, pos(7, 7));
        assert_eq!(at_structured, at);

        // A bad value in a sequence inside a flow mapping.
        let src = POLICY.replace("methods: [POST]", "methods: [POST, 7]");
        let (path, at, at_structured) = lint(&src);
        assert_eq!(path, "rules[1].match.methods[1]");
        assert_eq!(at, pos(11, 46));
        assert_eq!(at_structured, at);

        // A bad value of a mapping entry: its key.
        let src = POLICY.replace("version: 1", "version: one");
        let (path, at, _) = lint(&src);
        assert_eq!(path, "version");
        assert_eq!(at, pos(2, 1));

        // A missing field: the mapping that lacks it.
        let src = POLICY.replace("    scopes:\n      - accounts:read\n", "");
        let (path, at, _) = lint(&src);
        assert_eq!(path, "rules[0]");
        assert_eq!(at, pos(4, 5));

        // An unknown field at the root.
        let (path, at, _) = lint("version: 1\nrules: []\nextra: true\n");
        assert_eq!(path, "extra");
        assert_eq!(at, pos(3, 1));
    }

    #[test]
    fn keys_with_dots_and_brackets_are_found() {
        let (_, map) = ok("a.b: 1\na:\n  c: 2\nx[0]: [y]\n\"\": {z: 3}\n");
        assert_eq!(map.position("a.b"), pos(1, 1));
        assert_eq!(map.position("a.c"), pos(3, 3));
        assert_eq!(map.position("x[0]"), pos(4, 1));
        assert_eq!(map.position("x[0][0]"), pos(4, 8));
        assert_eq!(map.position(".z"), pos(5, 6));
        assert_eq!(map.position_of(&[PathSegment::Key("a.b")]), pos(1, 1));
    }

    #[test]
    fn duplicate_keys_are_refused_at_the_second_one() {
        let e = err("name: a\nscopes: []\nname: b\n");
        assert_eq!(e.position, pos(3, 1));
        assert_eq!(e.message, "duplicate key `name`");
        assert_eq!(e.to_string(), "line 3, column 1: duplicate key `name`");

        let e = err("rules:\n  - match: {path: /a, \"path\": /b}\n");
        assert_eq!(e.position, pos(2, 23));
        assert_eq!(e.message, "duplicate key `\"path\"`");
    }

    #[test]
    fn keys_must_be_strings() {
        let e = err("ok: 1\n200: fine\n");
        assert_eq!(e.position, pos(2, 1));
        assert!(e.message.contains("`200` is an integer"), "{e}");
        for (src, kind, at) in [
            ("a:\n  true: x\n", "a boolean", pos(2, 3)),
            ("~: x\n", "null", pos(1, 1)),
            ("{1.5: x}\n", "a float", pos(1, 2)),
            ("? [a, b]\n: x\n", "a sequence", pos(1, 3)),
            ("? {a: b}\n: x\n", "a mapping", pos(1, 3)),
        ] {
            let e = err(src);
            assert_eq!(e.position, at, "{src:?}: {e}");
            assert!(e.message.contains(kind), "{src:?}: {e}");
        }
        // Quoted, they are strings.
        assert_eq!(ok("\"200\": x\n'true': y\n").0, json!({"200": "x", "true": "y"}));
    }

    #[test]
    fn exactly_one_document() {
        let e = err("a: 1\n---\nb: 2\n");
        assert_eq!(e.position, pos(3, 1));
        assert!(e.message.contains("second YAML document"), "{e}");
        assert!(err("--- a\n--- b\n").message.contains("second"));
        for src in ["", "\n\n", "# nothing but a comment\n"] {
            let e = err(src);
            assert_eq!(e.position, None, "{src:?}");
            assert!(e.message.contains("no YAML document"), "{src:?}: {e}");
        }
        for src in ["---\n", "--- # empty\n...\n", "%YAML 1.2\n---\n"] {
            let e = err(src);
            assert_eq!(e.message, "the document is empty", "{src:?}");
            assert!(e.position.is_some());
        }
        // An explicit null is a document.
        assert_eq!(ok("~\n").0, Value::Null);
        assert_eq!(ok("--- null\n...\n").0, Value::Null);
        assert_eq!(ok("---\na: 1\n...\n").0, json!({"a": 1}));
    }

    #[test]
    fn merge_keys_are_refused() {
        let e = err("base: &b {x: 1}\nrule:\n  <<: *b\n  y: 2\n");
        assert_eq!(e.position, pos(3, 3));
        assert!(e.message.contains("merge keys"), "{e}");
        assert!(err("{\"<<\": 1}\n").message.contains("merge keys"));
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let (value, _) = ok(concat!(
            "plain_int: 01\n",
            "quoted_int: \"01\"\n",
            "single: '01'\n",
            "hex: 0x1F\n",
            "octal: 0o17\n",
            "negative: -5\n",
            "plus: +5\n",
            "float: 1.5\n",
            "exp: 1e3\n",
            "big: 18446744073709551615\n",
            "yes: true\n",
            "quoted_bool: \"true\"\n",
            "title: True\n",
            "not_bool: yes\n",
            "nothing: ~\n",
            "null_word: null\n",
            "empty:\n",
            "quoted_null: 'null'\n",
            "tagged: !!str 01\n",
            "tagged_float: !!float 1\n",
            "version: 1.10\n",
            "literal: |\n  line\n",
            "under: 1_000\n",
            "colon: a:b\n",
        ));
        assert_eq!(
            value,
            json!({
                "plain_int": 1, "quoted_int": "01", "single": "01", "hex": 31, "octal": 15,
                "negative": -5, "plus": 5, "float": 1.5, "exp": 1000.0,
                "big": 18_446_744_073_709_551_615_u64, "yes": true, "quoted_bool": "true",
                "title": true, "not_bool": "yes", "nothing": null, "null_word": null,
                "empty": null, "quoted_null": "null", "tagged": "01", "tagged_float": 1.0,
                "version": 1.1, "literal": "line\n", "under": "1_000", "colon": "a:b",
            })
        );
        assert!(value["plain_int"].is_i64());
        assert!(value["exp"].is_f64());
        assert!(value["tagged_float"].is_f64());

        for (src, needle) in [
            ("x: .nan\n", "not a finite number"),
            ("x: -.inf\n", "not a finite number"),
            ("x: 1e400\n", "not a finite number"),
            ("x: 18446744073709551616\n", "out of range"),
            ("x: -9223372036854775809\n", "out of range"),
            ("x: 0x1FFFFFFFFFFFFFFFF\n", "out of range"),
            ("x: !!int abc\n", "does not match its tag `!!int`"),
            ("x: !custom 5\n", "tag `!custom` is not supported"),
            ("x: !custom {a: 1}\n", "tag `!custom` is not supported"),
        ] {
            let e = err(src);
            assert_eq!(e.position, pos(1, 4), "{src:?}");
            assert!(e.message.contains(needle), "{src:?}: {e}");
        }
        // Quoted, the same texts are strings.
        assert_eq!(
            ok("a: \".nan\"\nb: '18446744073709551616'\nc: \"0x1FFFFFFFFFFFFFFFF\"\n").0,
            json!({"a": ".nan", "b": "18446744073709551616", "c": "0x1FFFFFFFFFFFFFFFF"})
        );
    }

    #[test]
    fn anchors_and_aliases_are_resolved() {
        let src = "defs:\n  read: &read [a:read, b:read]\nrules:\n  - scopes: *read\n  - scopes: *read\n    m: &m {k: v}\n    n: *m\n";
        let (value, map) = ok(src);
        assert_eq!(value["rules"][0]["scopes"], json!(["a:read", "b:read"]));
        assert_eq!(value["rules"][1]["scopes"], json!(["a:read", "b:read"]));
        assert_eq!(value["rules"][1]["n"], json!({"k": "v"}));
        // The alias is where it is written; what it copies is where the anchor's content is.
        assert_eq!(map.position("rules[0].scopes"), pos(4, 5));
        assert_eq!(map.position("rules[0].scopes[1]"), pos(2, 24));
        assert_eq!(map.position("rules[1].n.k"), pos(6, 12));
        // Globs and ampersands in text are not aliases.
        let (value, _) = ok("paths: [/a/*, \"/b/ *c\"]\nq: a &b\n# see *x\n");
        assert_eq!(value, json!({"paths": ["/a/*", "/b/ *c"], "q": "a &b"}));
        // Aliases as keys.
        let (value, _) = ok("a: &k1 one\nb: &k2 two\nm:\n  *k1 : 1\n  *k2 : 2\n");
        assert_eq!(value["m"], json!({"one": 1, "two": 2}));
        let e = err("a: *nowhere\n");
        assert_eq!(e.position, pos(1, 4));
        assert!(e.message.contains("unknown anchor"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        // Flow: saphyr stops at 255 brackets; deeper than 64 is refused where it happens.
        let e = err(&"[".repeat(10_000));
        assert!(e.message.contains("nesting deeper than 64"), "{e}");
        let e = err(&format!("{}{}", "[".repeat(300), "]".repeat(300)));
        assert!(e.message.contains("nesting deeper than 64"), "{e}");
        assert!(ok(&format!("{}{}", "[".repeat(64), "]".repeat(64))).0.is_array());
        let e = err(&format!("{}{}", "[".repeat(65), "]".repeat(65)));
        assert_eq!(e.position, pos(1, 65));
        assert!(e.message.contains("nesting deeper than 64"));
        let e = err(&format!("a: {}1{}", "{b: ".repeat(70), "}".repeat(70)));
        assert_eq!(e.position, pos(1, 4 + 63 * 4));
        let implicit = format!("{}x{}", "[a: ".repeat(250), "]".repeat(250));
        assert!(err(&implicit).message.contains("nesting deeper than 64"));

        // Block: refused by the pre-scan, before saphyr's recursion.
        let mut block = String::new();
        for i in 0..1_000 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        let e = err(&block);
        assert_eq!(e.position, pos(65, 65));
        assert!(e.message.contains("nesting deeper than 64"), "{e}");
        let e = err(&format!("{}x\n", "- ".repeat(100_000)));
        assert_eq!(e.position, pos(1, 129));
        let e = err(&format!("{}x\n", "? ".repeat(100_000)));
        assert!(e.message.contains("nesting deeper than 64"), "{e}");
        let mut ok_block = String::new();
        for i in 0..64 {
            ok_block.push_str(&" ".repeat(i));
            ok_block.push_str("k:\n");
        }
        assert!(ok(&ok_block).0.is_object());
        let mut deep_block = String::new();
        for i in 0..65 {
            deep_block.push_str(&" ".repeat(i));
            deep_block.push_str("k:\n");
        }
        assert_eq!(err(&deep_block).position, pos(65, 65));
    }

    #[test]
    fn alias_bombs_are_refused() {
        // Each anchor nests the previous one 60 levels deeper: saphyr would copy ever deeper trees.
        let mut chain = String::new();
        let (open, close) = ("[".repeat(60), "]".repeat(60));
        chain.push_str(&format!("a0: &a0 {open}x{close}\n"));
        for i in 1..200 {
            chain.push_str(&format!("a{i}: &a{i} {open}*a{} {close}\n", i - 1));
        }
        let e = err(&chain);
        assert_eq!(e.position, pos(3, 69));
        assert!(e.message.contains("alias `*a1` expands to nesting deeper"), "{e}");

        // Shallow but wide: a billion laughs.
        let mut laughs = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*l{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            laughs.push_str(&format!("l{i}: &l{i} [{items}]\n"));
        }
        let e = err(&laughs);
        assert!(
            e.message.contains("too many nodes") || e.message.contains("characters"),
            "{e}"
        );

        // Few nodes, much text.
        let big = "x".repeat(500_000);
        let mut text = format!("s: &s {big}\nl: [");
        text.push_str(&["*s"; 40].join(", "));
        text.push_str("]\n");
        let e = err(&text);
        assert!(e.message.contains("characters"), "{e}");
    }

    #[test]
    fn input_size_is_limited() {
        let big = format!("a: {}\n", "x".repeat(MAX_INPUT_BYTES));
        let e = err(&big);
        assert_eq!(e.position, None);
        assert!(e.message.contains("at most 1048576 bytes"), "{e}");
        let fits = format!("a: {}\n", "x".repeat(MAX_INPUT_BYTES - 5));
        assert_eq!(ok(&fits).0["a"].as_str().map(str::len), Some(MAX_INPUT_BYTES - 5));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = err("a: [1, 2\nb: 3\n");
        assert!(e.position.is_some(), "{e}");
        let e = err("a: 1\n b: 2\n");
        assert_eq!(e.position.map(|p| p.line), Some(2), "{e}");
        let e = err("a: \"unterminated\n");
        assert!(e.position.is_some(), "{e}");
    }

    #[test]
    fn positions_count_characters_and_lines_like_an_editor() {
        let (_, map) = ok("\u{feff}é: 1\r\nb:\r\n  - ü\r\n  - x\r\n");
        assert_eq!(map.position("é"), pos(1, 1));
        assert_eq!(map.position("b[1]"), pos(4, 5));
        let (_, map) = ok("ünï: {cödé: 1, x: 2}\n");
        assert_eq!(map.position("ünï.x"), pos(1, 16));
        // Tabs do not indent in YAML.
        assert_eq!(err("a:\n\t- 1\n").position.map(|p| p.line), Some(2));
    }

    #[test]
    fn error_display() {
        let e = YamlError {
            message: "m".into(),
            position: pos(3, 7),
        };
        assert_eq!(e.to_string(), "line 3, column 7: m");
        let e = YamlError {
            message: "m".into(),
            position: None,
        };
        assert_eq!(e.to_string(), "m");
    }

    #[test]
    fn garbage_never_panics() {
        let alphabet: Vec<char> = "ab1 -?:,[]{}#&*!|>'\"%@`\n\t\r.~<\\0x\u{feff}é".chars().collect();
        let seeds = [
            POLICY,
            "- &x a\n- *x\n",
            "? a\n: b\n",
            "k: |\n  t\n",
            "{a: b, c: [d]}",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let seed = seeds[(next() % seeds.len() as u64) as usize];
            let mut s: Vec<char> = seed.chars().collect();
            for _ in 0..1 + next() % 8 {
                let at = (next() as usize) % (s.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => s.insert(at, c),
                    1 if at < s.len() => s[at] = c,
                    _ if at < s.len() => {
                        s.remove(at);
                    }
                    _ => {}
                }
            }
            let text: String = s.into_iter().collect();
            if let Ok((_, map)) = load(&text) {
                let _ = map.position("rules[0].match.path");
            }
        }
    }
}
