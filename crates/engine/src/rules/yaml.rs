//! A small YAML tree that remembers where every node starts (line and column), built from
//! yaml-rust2's event parser, so load errors can name `file:line:col`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source file: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// What a node holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `~`, `null` or nothing.
    Null,
    /// Any other scalar, as written (after YAML unquoting); `quoted` when not plain.
    Scalar {
        /// The scalar's text.
        text: String,
        /// True for quoted and block scalars (they are never null, bool or number).
        quoted: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, keys in document order.
    Map(Vec<(Node, Node)>),
}

/// One YAML node and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// Its content.
    pub kind: Kind,
}

impl Node {
    /// The text of a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A plain `true`/`false` scalar (YAML 1.1 spellings included).
    pub fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            Kind::Scalar {
                text,
                quoted: false,
            } => match text.as_str() {
                "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
                "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                    Some(false)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The value of `key` in a mapping, with the key node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// True for a null node.
    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// A short description of the node's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos_line}:{pos_col}: YAML syntax error: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub pos_line: usize,
    /// 1-based column.
    pub pos_col: usize,
    /// The parser's description.
    pub message: String,
}

/// Nesting limit for YAML documents: deeper documents are refused, not recursed into.
const MAX_DEPTH: usize = 256;

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<(Pos, String)>,
}

fn pos_of(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

fn is_null_plain(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }

    fn finish(&mut self, anchor: usize, node: Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.push_value(node);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = pos_of(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = style != TScalarStyle::Plain;
                let explicit_str = matches!(&tag, Some(Tag { suffix, .. }) if suffix == "str");
                let kind = if !quoted && !explicit_str && is_null_plain(&text) {
                    Kind::Null
                } else {
                    Kind::Scalar {
                        text,
                        quoted: quoted || explicit_str,
                    }
                };
                self.finish(anchor, Node { pos, kind });
            }
            Event::SequenceStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.error = Some((pos, format!("nested deeper than {MAX_DEPTH}")));
                    return;
                }
                self.stack.push(Frame::Seq(pos, anchor, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.error = Some((pos, format!("nested deeper than {MAX_DEPTH}")));
                    return;
                }
                self.stack.push(Frame::Map(pos, anchor, Vec::new(), None));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(p, anchor, items)) = self.stack.pop() {
                    self.finish(
                        anchor,
                        Node {
                            pos: p,
                            kind: Kind::Seq(items),
                        },
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(p, anchor, entries, _)) = self.stack.pop() {
                    // A block mapping's start marker is at its first ':'; its first key is
                    // where a reader sees it start.
                    let p = entries.first().map(|(k, _)| k.pos).unwrap_or(p);
                    self.finish(
                        anchor,
                        Node {
                            pos: p,
                            kind: Kind::Map(entries),
                        },
                    );
                }
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => {
                    let mut n = n.clone();
                    n.pos = pos;
                    self.push_value(n);
                }
                None => self.error = Some((pos, "alias to an unknown anchor".into())),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Parses every document of `text`.
///
/// libyaml (which Falco uses) accepts a flow sequence whose closing `]` sits at the parent's
/// indentation (`items: [` ... `]` at column 3), yaml-rust2 does not; upstream falco_rules
/// does this. When the first parse fails, lines holding only a closing bracket are re-indented
/// like the line before them (line numbers are unchanged) and the text is parsed again.
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    match parse_strict(text) {
        Ok(d) => Ok(d),
        Err(e) => match relax_closing_brackets(text) {
            Some(fixed) => parse_strict(&fixed).map_err(|_| e),
            None => Err(e),
        },
    }
}

fn relax_closing_brackets(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut prev_indent = 0usize;
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start_matches(' ');
        let indent = body.len() - trimmed.len();
        if matches!(trimmed.trim_end(), "]" | "]," | "}" | "},") && indent < prev_indent {
            out.push_str(&" ".repeat(prev_indent));
            out.push_str(trimmed);
            out.push_str(&line[body.len()..]);
            changed = true;
            continue;
        }
        if !trimmed.trim().is_empty() && !trimmed.starts_with('#') {
            prev_indent = indent;
        }
        out.push_str(line);
    }
    changed.then_some(out)
}

fn parse_strict(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, true) {
        let m = e.marker();
        return Err(YamlError {
            pos_line: m.line(),
            pos_col: m.col() + 1,
            message: e.info().to_string(),
        });
    }
    if let Some((pos, message)) = b.error {
        return Err(YamlError {
            pos_line: pos.line,
            pos_col: pos.col,
            message,
        });
    }
    Ok(b.docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let docs =
            parse("- rule: a\n  enabled: false\n-\n- list: x\n  items: [a, \"b c\"]\n").unwrap();
        assert_eq!(docs.len(), 1);
        let Kind::Seq(items) = &docs[0].kind else {
            panic!("not a seq")
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].pos, Pos { line: 1, col: 3 });
        assert!(items[1].is_null());
        let rule = items[0].get("rule").unwrap();
        assert_eq!(rule.pos, Pos { line: 1, col: 9 });
        assert_eq!(items[0].get("enabled").unwrap().as_bool(), Some(false));
        let Kind::Seq(list) = &items[2].get("items").unwrap().kind else {
            panic!("not a seq")
        };
        assert_eq!(list[1].as_str(), Some("b c"));
        assert_eq!(list[1].pos, Pos { line: 5, col: 14 });
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("- a: [\n").unwrap_err();
        assert!(e.pos_line >= 1, "{e}");
        let e = parse("- a: b\n c: : d\n").unwrap_err();
        assert!(e.to_string().contains("YAML syntax error"), "{e}");
    }

    #[test]
    fn aliases_and_deep_nesting() {
        let docs = parse("- &x {a: 1}\n- *x\n").unwrap();
        let Kind::Seq(items) = &docs[0].kind else {
            panic!()
        };
        assert_eq!(items[1].get("a").unwrap().as_str(), Some("1"));
        let deep = "[".repeat(400) + &"]".repeat(400);
        assert!(parse(&deep).is_err());
    }
}
