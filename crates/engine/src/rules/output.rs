//! Output formats: `%field` interpolation compiled at load time, rendered per alert.

use serde_json::{Map, Value};

use super::compiler::{Catalog, Slots, resolve_field};
use super::eval::Ctx;
use super::fields::{self, FieldError};

/// One piece of a format.
#[derive(Clone, Debug)]
enum Seg {
    Lit(String),
    Field {
        slot: usize,
        name: String,
        width: Option<usize>,
        list: bool,
    },
}

/// A compiled output format.
#[derive(Clone, Debug, Default)]
pub struct Format {
    segs: Vec<Seg>,
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

/// An output format that does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A `%` with nothing after it.
    #[error("'%' at the end of the output")]
    TrailingPercent,
    /// A `%` followed by something that is not a field name.
    #[error("invalid field reference '%{0}'")]
    InvalidReference(String),
    /// A known field with a bad argument.
    #[error("in output '%{text}': {error}")]
    Field {
        /// The text after the `%`.
        text: String,
        /// What is wrong with the field.
        error: FieldError,
    },
    /// No field name starts here.
    #[error("unknown field in output '%{0}'")]
    UnknownField(String),
}

/// Compiles `fmt`: at each `%`, an optional width, then the longest prefix that is a field
/// (with its `[arg]`).
pub fn compile_format(
    fmt: &str,
    catalog: Catalog,
    slots: &mut Slots,
) -> Result<Format, FormatError> {
    let b = fmt.as_bytes();
    let mut segs = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < b.len() {
        let Some(rel) = fmt[i..].find('%') else {
            lit.push_str(&fmt[i..]);
            break;
        };
        lit.push_str(&fmt[i..i + rel]);
        i += rel + 1;
        let ws = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let width = fmt[ws..i].parse::<usize>().ok();
        let start = i;
        let mut end = start;
        while end < b.len() && is_name_char(b[end]) {
            end += 1;
        }
        if end == start {
            return Err(if i >= b.len() {
                FormatError::TrailingPercent
            } else {
                FormatError::InvalidReference(excerpt(&fmt[ws..]))
            });
        }
        let mut found = None;
        let mut cut = end;
        while cut > start {
            let name = &fmt[start..cut];
            let known = match catalog {
                Catalog::Event => fields::is_field(name),
                Catalog::Alert => true,
            };
            if known {
                let (arg, after) = if b.get(cut) == Some(&b'[') {
                    match fmt[cut + 1..].find(']') {
                        Some(close) => (Some(&fmt[cut + 1..cut + 1 + close]), cut + 1 + close + 1),
                        None => (None, cut),
                    }
                } else {
                    (None, cut)
                };
                match resolve_field(catalog, name, arg) {
                    Ok((slot, list)) => {
                        let shown = match arg {
                            Some(a) => format!("{name}[{a}]"),
                            None => name.to_string(),
                        };
                        found = Some((slots.intern(slot), shown, list, after));
                        break;
                    }
                    Err(error) if arg.is_some() || fields::is_field(name) => {
                        return Err(FormatError::Field {
                            text: excerpt(&fmt[start..]),
                            error,
                        });
                    }
                    Err(_) => {}
                }
            }
            cut -= 1;
        }
        let Some((slot, name, list, after)) = found else {
            return Err(FormatError::UnknownField(excerpt(&fmt[start..end])));
        };
        if !lit.is_empty() {
            segs.push(Seg::Lit(std::mem::take(&mut lit)));
        }
        segs.push(Seg::Field {
            slot,
            name,
            width,
            list,
        });
        i = after;
    }
    if !lit.is_empty() {
        segs.push(Seg::Lit(lit));
    }
    Ok(Format { segs })
}

fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

impl Format {
    /// Renders the text and the `output_fields` map.
    pub fn render(&self, ctx: &mut Ctx<'_>) -> (String, Map<String, Value>) {
        let mut text = String::new();
        let mut map = Map::new();
        for s in &self.segs {
            match s {
                Seg::Lit(l) => text.push_str(l),
                Seg::Field {
                    slot,
                    name,
                    width,
                    list,
                } => {
                    let vals = ctx.values(*slot);
                    let (shown, json) = if vals.is_empty() {
                        ("<NA>".to_string(), Value::Null)
                    } else if *list {
                        (
                            format!("({})", vals.join(",")),
                            Value::Array(
                                vals.iter().map(|v| Value::String(v.to_string())).collect(),
                            ),
                        )
                    } else {
                        (vals[0].to_string(), Value::String(vals[0].to_string()))
                    };
                    match width {
                        Some(w) => {
                            let mut t: String = shown.chars().take(*w).collect();
                            while t.chars().count() < *w {
                                t.push(' ');
                            }
                            text.push_str(&t);
                        }
                        None => text.push_str(&shown),
                    }
                    map.insert(name.clone(), json);
                }
            }
        }
        (text, map)
    }

    /// The field names the format interpolates.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Field { name, .. } => Some(name.as_str()),
            Seg::Lit(_) => None,
        })
    }
}
