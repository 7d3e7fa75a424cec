//! Output formats: `%field` interpolation compiled at load time, rendered per alert.

use serde_json::{Map, Value};

use super::compiler::{Catalog, Slots, resolve_field};
use super::eval::Ctx;
use super::fields::{self, FieldError};

/// The widest a `%Nfield` may pad or cut to: a larger width is taken as this one, so a rule
/// cannot make one alert cost more than a few KiB of padding (`%1000000000ka.verb`).
pub const MAX_WIDTH: usize = 1024;

/// The longest an alert's output text may be; a longer one is cut at a character boundary and
/// ends with [`TRUNCATED`].
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// What a cut output text ends with.
pub const TRUNCATED: &str = "…(truncated)";

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
        // Digits too many for a number are the widest width too.
        let width = (i > ws).then(|| {
            fmt[ws..i]
                .parse::<usize>()
                .unwrap_or(usize::MAX)
                .min(MAX_WIDTH)
        });
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

/// Appends `shown` cut or padded with spaces to exactly `width` characters, in one pass.
fn pad_to(text: &mut String, shown: &str, width: usize) {
    let mut n = 0;
    for c in shown.chars().take(width) {
        text.push(c);
        n += 1;
    }
    text.extend(std::iter::repeat_n(' ', width - n));
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
                Seg::Lit(l) if text.len() <= MAX_OUTPUT_BYTES => text.push_str(l),
                Seg::Lit(_) => {}
                Seg::Field {
                    slot,
                    name,
                    width,
                    list,
                } => {
                    let vals = ctx.values(*slot);
                    // Past the cap the text stops growing, and a field repeated in the format
                    // is converted once; every field is still recorded (routing reads them,
                    // e.g. a tenant rule's trailing namespace).
                    if text.len() <= MAX_OUTPUT_BYTES {
                        let at = text.len();
                        if vals.is_empty() {
                            text.push_str("<NA>");
                        } else if *list {
                            text.push('(');
                            for (k, v) in vals.iter().enumerate() {
                                if k > 0 {
                                    text.push(',');
                                }
                                text.push_str(v);
                            }
                            text.push(')');
                        } else {
                            text.push_str(&vals[0]);
                        }
                        if let Some(w) = width {
                            let shown = text.split_off(at);
                            pad_to(&mut text, &shown, *w);
                        }
                    }
                    if !map.contains_key(name.as_str()) {
                        let json = if vals.is_empty() {
                            Value::Null
                        } else if *list {
                            Value::Array(
                                vals.iter().map(|v| Value::String(v.to_string())).collect(),
                            )
                        } else {
                            Value::String(vals[0].to_string())
                        };
                        map.insert(name.clone(), json);
                    }
                }
            }
        }
        if text.len() > MAX_OUTPUT_BYTES {
            let mut cut = MAX_OUTPUT_BYTES - TRUNCATED.len();
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(TRUNCATED);
        }
        (text, map)
    }

    /// The slots the format reads.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.segs.iter().filter_map(|s| match s {
            Seg::Field { slot, .. } => Some(*slot),
            Seg::Lit(_) => None,
        })
    }

    /// The field names the format interpolates.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Field { name, .. } => Some(name.as_str()),
            Seg::Lit(_) => None,
        })
    }
}
