//! Rules files: reading items (`rule`, `macro`, `list`, `required_engine_version`,
//! `required_plugin_versions`) from several files in order with Falco's replace / append /
//! override / enable-only semantics, then list substitution, macro resolution, exceptions and
//! compilation into a [`Ruleset`](super::Ruleset).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::compiler::{self, Catalog, Node, Slots};
use super::output::{self, Format};
use super::parser::{self, Expr, Op};
use super::yaml::{self, Kind, Node as Y, Pos};
use crate::alert::Priority;

/// The rules engine version kaudit implements (`required_engine_version` up to this loads).
pub const ENGINE_VERSION: (u64, u64, u64) = (0, 26, 0);

/// The only source kaudit evaluates.
pub const K8S_SOURCE: &str = "k8s_audit";

/// A place in a rules file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    /// File name as given.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One error or warning: where, which item, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub loc: Loc,
    /// The item, e.g. `rule 'Create Privileged Pod'` (empty for file-level problems).
    pub item: String,
    /// What is wrong, quoting the offending text.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.item.is_empty() {
            write!(f, "{}: {}", self.loc, self.message)
        } else {
            write!(f, "{}: {}: {}", self.loc, self.item, self.message)
        }
    }
}

/// Rules that did not load; lists every error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read rules file {file}: {message}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        message: String,
    },
    /// One or more errors in the rules.
    #[error("{}", fmt_errors(.0))]
    Invalid(Vec<Diagnostic>),
}

fn fmt_errors(v: &[Diagnostic]) -> String {
    let mut s = format!("{} error(s) in rules:", v.len());
    for d in v {
        s.push_str("\n  ");
        s.push_str(&d.to_string());
    }
    s
}

impl LoadError {
    /// Every diagnostic (one for an I/O error).
    pub fn diagnostics(&self) -> Vec<String> {
        match self {
            LoadError::Io { .. } => vec![self.to_string()],
            LoadError::Invalid(v) => v.iter().map(|d| d.to_string()).collect(),
        }
    }
}

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Files (or in-memory sources) read.
    pub files: usize,
    /// `k8s_audit` rules compiled.
    pub rules_loaded: usize,
    /// Of those, enabled and at or above `min_priority`: the rules evaluated.
    pub rules_active: usize,
    /// Loaded rules that are disabled.
    pub rules_disabled: usize,
    /// Loaded rules below `min_priority`.
    pub rules_below_min_priority: usize,
    /// Rules of other sources (e.g. `syscall`), skipped.
    pub rules_skipped: usize,
    /// Macros parsed.
    pub macros_loaded: usize,
    /// Macros used by no `k8s_audit` rule.
    pub macros_skipped: usize,
    /// Lists read.
    pub lists_loaded: usize,
    /// Lists used by no `k8s_audit` rule.
    pub lists_skipped: usize,
    /// Warnings, each with `file:line:col` and the item.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug)]
enum ExFields {
    One(String),
    Many(Vec<String>),
    /// No `fields` key: only valid when adding values to an existing exception.
    Unspecified,
}

#[derive(Clone, Debug)]
enum ExValue {
    Scalar(String),
    List(Vec<String>),
}

#[derive(Clone, Debug)]
struct Exception {
    name: String,
    loc: Loc,
    fields: ExFields,
    comps: Vec<String>,
    values: Vec<Vec<ExValue>>,
}

#[derive(Clone, Debug)]
struct ListDef {
    name: String,
    loc: Loc,
    items: Vec<String>,
    file: usize,
}

#[derive(Clone, Debug)]
struct MacroDef {
    name: String,
    loc: Loc,
    cond: String,
    cond_loc: Loc,
    index: usize,
    visibility: usize,
    file: usize,
}

#[derive(Clone, Debug)]
struct RuleDef {
    name: String,
    file: usize,
    loc: Loc,
    cond: String,
    cond_loc: Loc,
    output: String,
    output_loc: Loc,
    desc: String,
    priority: Priority,
    tags: Vec<String>,
    enabled: bool,
    source: String,
    exceptions: Vec<Exception>,
    skip_if_unknown: bool,
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// Name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Priority.
    pub priority: Priority,
    /// Tags.
    pub tags: Vec<String>,
    /// Enabled flag after all files.
    pub enabled: bool,
    /// Source.
    pub source: String,
    /// Compiled condition (None for rules of other sources, or skipped unknown-field rules).
    pub cond: Option<Node>,
    /// Compiled output.
    pub output: Format,
}

/// Everything compiled: rules in definition order and the shared slot table.
#[derive(Debug, Default)]
pub struct Compiled {
    /// All rules, including skipped ones.
    pub rules: Vec<CompiledRule>,
    /// Field slots.
    pub slots: Slots,
    /// The report.
    pub report: LoadReport,
}

struct Source<'a> {
    name: Arc<str>,
    text: &'a str,
    line_starts: Vec<usize>,
}

#[derive(Default)]
struct Collector {
    lists: Vec<ListDef>,
    list_idx: HashMap<String, usize>,
    macros: Vec<MacroDef>,
    macro_idx: HashMap<String, usize>,
    macro_seq: usize,
    rules: Vec<RuleDef>,
    rule_idx: HashMap<String, usize>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    foreign_rule_files: HashSet<usize>,
    legacy_files: HashSet<usize>,
}

/// Files requiring an engine version below this are legacy (pre-plugin) rulesets.
const LEGACY_BELOW: (u64, u64, u64) = (0, 15, 0);

fn loc(file: &Arc<str>, p: Pos) -> Loc {
    Loc {
        file: file.clone(),
        line: p.line,
        col: p.col,
    }
}

const LIST_KEYS: &[&str] = &["list", "items", "append", "override"];
const MACRO_KEYS: &[&str] = &["macro", "condition", "append", "override"];
const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "source",
    "exceptions",
    "append",
    "override",
    "skip-if-unknown-filter",
    "warn_evttypes",
    "capture",
    "capture_duration",
];
const RULE_OVERRIDE_APPEND: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];
const RULE_OVERRIDE_REPLACE: &[&str] = &[
    "condition",
    "output",
    "desc",
    "priority",
    "tags",
    "exceptions",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
];

fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some((0, n, 0));
    }
    let mut it = s.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    let c = it.next()?.split(['-', '+']).next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((a, b, c))
}

impl Collector {
    fn error(&mut self, l: Loc, item: &str, message: String) {
        self.errors.push(Diagnostic {
            loc: l,
            item: item.to_string(),
            message,
        });
    }

    fn warn(&mut self, l: Loc, item: &str, message: String) {
        self.warnings.push(Diagnostic {
            loc: l,
            item: item.to_string(),
            message,
        });
    }

    fn read_file(&mut self, fidx: usize, src: &Source<'_>) {
        let docs = match yaml::parse(src.text) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    Loc {
                        file: src.name.clone(),
                        line: e.pos_line,
                        col: e.pos_col,
                    },
                    "",
                    format!("YAML syntax error: {}", e.message),
                );
                return;
            }
        };
        for doc in docs {
            match &doc.kind {
                Kind::Null => {}
                Kind::Seq(items) => {
                    for item in items {
                        self.read_item(fidx, &src.name, item);
                    }
                }
                _ => self.error(
                    loc(&src.name, doc.pos),
                    "",
                    format!(
                        "a rules file must be a sequence of items, found {}",
                        doc.type_name()
                    ),
                ),
            }
        }
    }

    fn unknown_keys(&mut self, item: &Y, known: &[&str], file: &Arc<str>, what: &str) {
        if let Kind::Map(entries) = &item.kind {
            for (i, (k, _)) in entries.iter().enumerate() {
                let name = k.as_str().unwrap_or("");
                if entries[..i].iter().any(|(p, _)| p.as_str() == Some(name)) {
                    self.error(
                        loc(file, k.pos),
                        what,
                        format!("key '{name}' appears twice in this item"),
                    );
                }
                if !known.contains(&name) {
                    self.warn(loc(file, k.pos), what, format!("unknown key '{name}'"));
                }
            }
        }
    }

    fn str_key(
        &mut self,
        item: &Y,
        key: &str,
        file: &Arc<str>,
        what: &str,
    ) -> Option<(String, Loc)> {
        let v = item.get(key)?;
        match v.as_str() {
            Some(s) => Some((s.to_string(), loc(file, v.pos))),
            None if v.is_null() => None,
            None => {
                self.error(
                    loc(file, v.pos),
                    what,
                    format!("'{key}' must be a string, found {}", v.type_name()),
                );
                None
            }
        }
    }

    fn bool_key(&mut self, item: &Y, key: &str, file: &Arc<str>, what: &str) -> Option<bool> {
        let v = item.get(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.error(
                    loc(file, v.pos),
                    what,
                    format!(
                        "'{key}' must be true or false, found '{}'",
                        v.as_str().unwrap_or(v.type_name())
                    ),
                );
                None
            }
        }
    }

    fn scalars(&mut self, v: &Y, key: &str, file: &Arc<str>, what: &str) -> Option<Vec<String>> {
        match &v.kind {
            Kind::Null => Some(Vec::new()),
            Kind::Seq(items) => {
                let mut out = Vec::new();
                for i in items {
                    match i.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => {
                            self.error(
                                loc(file, i.pos),
                                what,
                                format!("'{key}' items must be scalars, found {}", i.type_name()),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.error(
                    loc(file, v.pos),
                    what,
                    format!("'{key}' must be a sequence, found {}", v.type_name()),
                );
                None
            }
        }
    }

    /// How a list or macro item combines with an earlier one of its name: `(append, overridden)`
    /// from `append: true` or `override: {<key>: append|replace}`, the only key such items may
    /// override. `None` after reporting an error.
    fn single_key_mode(
        &mut self,
        item: &Y,
        file: &Arc<str>,
        what: &str,
        here: &Loc,
        kind: &str,
        key: &str,
    ) -> Option<(bool, bool)> {
        let append = self.bool_key(item, "append", file, what).unwrap_or(false);
        let Some(ov) = self.overrides(item, file, what) else {
            return Some((append, false));
        };
        if append {
            self.error(
                here.clone(),
                what,
                "'append' and 'override' cannot be used together".into(),
            );
            return None;
        }
        let mut mode = (false, false);
        for (k, app, l) in ov {
            if k != key {
                self.error(
                    l,
                    what,
                    format!("a {kind} can only override '{key}', not '{k}'"),
                );
                return None;
            }
            mode = (app, true);
        }
        Some(mode)
    }

    /// `override:` as a map of key → append|replace.
    fn overrides(
        &mut self,
        item: &Y,
        file: &Arc<str>,
        what: &str,
    ) -> Option<Vec<(String, bool, Loc)>> {
        let v = item.get("override")?;
        let Kind::Map(entries) = &v.kind else {
            self.error(
                loc(file, v.pos),
                what,
                "'override' must be a mapping of key: append|replace".into(),
            );
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        for (k, val) in entries {
            let key = k.as_str().unwrap_or("").to_string();
            match val.as_str() {
                Some("append") => out.push((key, true, loc(file, val.pos))),
                Some("replace") => out.push((key, false, loc(file, val.pos))),
                other => self.error(
                    loc(file, val.pos),
                    what,
                    format!(
                        "override of '{key}' must be 'append' or 'replace', found '{}'",
                        other.unwrap_or("?")
                    ),
                ),
            }
        }
        Some(out)
    }

    fn read_item(&mut self, fidx: usize, file: &Arc<str>, item: &Y) {
        let here = loc(file, item.pos);
        match &item.kind {
            Kind::Null => return,
            Kind::Map(_) => {}
            _ => {
                self.error(
                    here,
                    "",
                    format!(
                        "unexpected item: expected a mapping, found {}",
                        item.type_name()
                    ),
                );
                return;
            }
        }
        if let Some(v) = item.get("required_engine_version") {
            let text = v.as_str().unwrap_or("");
            match parse_version(text) {
                Some(req) if req > ENGINE_VERSION => {
                    let (a, b, c) = ENGINE_VERSION;
                    self.error(
                        loc(file, v.pos),
                        "required_engine_version",
                        format!("rules require engine version '{text}', kaudit supports up to {a}.{b}.{c}"),
                    )
                }
                Some(req) => {
                    if req < LEGACY_BELOW {
                        self.legacy_files.insert(fidx);
                    }
                }
                None => self.error(
                    loc(file, v.pos),
                    "required_engine_version",
                    format!("invalid engine version '{text}'"),
                ),
            }
        } else if let Some(v) = item.get("required_plugin_versions") {
            let ok = match &v.kind {
                Kind::Seq(entries) => entries.iter().all(|e| {
                    e.get("name").and_then(Y::as_str).is_some()
                        && e.get("version").and_then(Y::as_str).is_some()
                }),
                _ => false,
            };
            if !ok {
                self.error(
                    loc(file, v.pos),
                    "required_plugin_versions",
                    "expected a sequence of {name, version} entries".into(),
                );
            }
        } else if item.get("list").is_some() {
            self.read_list(fidx, file, item);
        } else if item.get("macro").is_some() {
            self.read_macro(fidx, file, item);
        } else if item.get("rule").is_some() {
            self.read_rule(fidx, file, item);
        } else {
            let first = match &item.kind {
                Kind::Map(e) => e
                    .first()
                    .and_then(|(k, _)| k.as_str())
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            };
            self.warn(here, "", format!("Unknown top level item '{first}'"));
        }
    }

    fn name_of(&mut self, item: &Y, key: &str, file: &Arc<str>) -> Option<String> {
        let v = item.get(key)?;
        match v.as_str() {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            _ => {
                self.error(
                    loc(file, v.pos),
                    key,
                    format!("'{key}' must be a non-empty name"),
                );
                None
            }
        }
    }

    fn read_list(&mut self, fidx: usize, file: &Arc<str>, item: &Y) {
        let Some(name) = self.name_of(item, "list", file) else {
            return;
        };
        let what = format!("list '{name}'");
        self.unknown_keys(item, LIST_KEYS, file, &what);
        let here = loc(file, item.pos);
        let Some(items_node) = item.get("items") else {
            self.error(here, &what, "list has no 'items'".into());
            return;
        };
        let Some(items) = self.scalars(items_node, "items", file, &what) else {
            return;
        };
        let Some((mode_append, overridden)) =
            self.single_key_mode(item, file, &what, &here, "list", "items")
        else {
            return;
        };
        match self.list_idx.get(&name).copied() {
            Some(i) => {
                if mode_append {
                    self.lists[i].items.extend(items);
                } else {
                    self.lists[i].items = items;
                    self.lists[i].loc = here;
                    self.lists[i].file = fidx;
                }
            }
            None if mode_append || overridden => self.error(
                here,
                &what,
                format!(
                    "List has '{}' key but no list by that name already exists",
                    if overridden { "override" } else { "append" }
                ),
            ),
            None => {
                self.list_idx.insert(name.clone(), self.lists.len());
                self.lists.push(ListDef {
                    name,
                    loc: here,
                    items,
                    file: fidx,
                });
            }
        }
    }

    fn read_macro(&mut self, fidx: usize, file: &Arc<str>, item: &Y) {
        let Some(name) = self.name_of(item, "macro", file) else {
            return;
        };
        let what = format!("macro '{name}'");
        self.unknown_keys(item, MACRO_KEYS, file, &what);
        let here = loc(file, item.pos);
        let Some((cond, cond_loc)) = self.str_key(item, "condition", file, &what) else {
            if item.get("condition").is_none() {
                self.error(here, &what, "macro has no 'condition'".into());
            }
            return;
        };
        let Some((mode_append, overridden)) =
            self.single_key_mode(item, file, &what, &here, "macro", "condition")
        else {
            return;
        };
        self.macro_seq += 1;
        let seq = self.macro_seq;
        match self.macro_idx.get(&name).copied() {
            Some(i) => {
                let m = &mut self.macros[i];
                if mode_append {
                    m.cond.push(' ');
                    m.cond.push_str(&cond);
                } else {
                    m.cond = cond;
                    m.cond_loc = cond_loc;
                    m.loc = here;
                    m.file = fidx;
                }
                m.visibility = seq;
            }
            None if mode_append || overridden => self.error(
                here,
                &what,
                format!(
                    "Macro has '{}' key but no macro by that name already exists",
                    if overridden { "override" } else { "append" }
                ),
            ),
            None => {
                if !name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
                    || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.warn(
                        here.clone(),
                        &what,
                        format!(
                            "macro name '{name}' is not an identifier; it cannot be referenced"
                        ),
                    );
                }
                self.macro_idx.insert(name.clone(), self.macros.len());
                self.macros.push(MacroDef {
                    name,
                    loc: here,
                    cond,
                    cond_loc,
                    index: seq,
                    visibility: seq,
                    file: fidx,
                });
            }
        }
    }

    fn read_exceptions(&mut self, v: &Y, file: &Arc<str>, what: &str) -> Option<Vec<Exception>> {
        let Kind::Seq(entries) = &v.kind else {
            if v.is_null() {
                return Some(Vec::new());
            }
            self.error(
                loc(file, v.pos),
                what,
                "'exceptions' must be a sequence".into(),
            );
            return None;
        };
        let mut out = Vec::new();
        for e in entries {
            let el = loc(file, e.pos);
            let Some(name) = e.get("name").and_then(Y::as_str) else {
                self.error(el, what, "exception has no 'name'".into());
                return None;
            };
            let ewhat = format!("{what} exception '{name}'");
            if out.iter().any(|x: &Exception| x.name == name) {
                self.error(
                    el,
                    what,
                    format!("exception '{name}' is defined twice in this item"),
                );
                return None;
            }
            if let Kind::Map(keys) = &e.kind {
                for (k, _) in keys {
                    let kn = k.as_str().unwrap_or("");
                    if !["name", "fields", "comps", "values"].contains(&kn) {
                        self.warn(loc(file, k.pos), &ewhat, format!("unknown key '{kn}'"));
                    }
                }
            }
            let fields = match e.get("fields") {
                None => ExFields::Unspecified,
                Some(f) => match &f.kind {
                    Kind::Scalar { text, .. } => ExFields::One(text.clone()),
                    _ => ExFields::Many(self.scalars(f, "fields", file, &ewhat)?),
                },
            };
            let comps = match e.get("comps") {
                None => match &fields {
                    ExFields::One(_) => vec!["in".to_string()],
                    ExFields::Many(f) => vec!["=".to_string(); f.len()],
                    ExFields::Unspecified => Vec::new(),
                },
                Some(c) => match &c.kind {
                    Kind::Scalar { text, .. } => vec![text.clone()],
                    _ => self.scalars(c, "comps", file, &ewhat)?,
                },
            };
            let mut values = Vec::new();
            if let Some(vs) = e.get("values") {
                match &vs.kind {
                    Kind::Null => {}
                    Kind::Seq(rows) => {
                        for row in rows {
                            match (&fields, &row.kind) {
                                (ExFields::One(_), Kind::Scalar { text, .. }) => {
                                    values.push(vec![ExValue::Scalar(text.clone())])
                                }
                                (ExFields::One(_), Kind::Seq(_)) => {
                                    let l = self.scalars(row, "values", file, &ewhat)?;
                                    values.push(vec![ExValue::List(l)]);
                                }
                                (ExFields::Unspecified, Kind::Scalar { text, .. }) => {
                                    values.push(vec![ExValue::Scalar(text.clone())])
                                }
                                (ExFields::Many(_) | ExFields::Unspecified, Kind::Seq(cells)) => {
                                    let mut tuple = Vec::new();
                                    for c in cells {
                                        match &c.kind {
                                            Kind::Scalar { text, .. } => {
                                                tuple.push(ExValue::Scalar(text.clone()))
                                            }
                                            Kind::Seq(_) => tuple.push(ExValue::List(
                                                self.scalars(c, "values", file, &ewhat)?,
                                            )),
                                            _ => {
                                                self.error(
                                                    loc(file, c.pos),
                                                    &ewhat,
                                                    "exception values must be scalars or lists"
                                                        .into(),
                                                );
                                                return None;
                                            }
                                        }
                                    }
                                    values.push(tuple);
                                }
                                _ => {
                                    self.error(
                                        loc(file, row.pos),
                                        &ewhat,
                                        format!("unexpected exception value: {}", row.type_name()),
                                    );
                                    return None;
                                }
                            }
                        }
                    }
                    _ => {
                        self.error(
                            loc(file, vs.pos),
                            &ewhat,
                            "'values' must be a sequence".into(),
                        );
                        return None;
                    }
                }
            }
            // Shape checks (fields themselves are checked at compile time, per source).
            match &fields {
                ExFields::Unspecified => {}
                ExFields::One(_) => {
                    if comps.len() != 1
                        || !["in", "pmatch", "intersects"].contains(&comps[0].as_str())
                    {
                        self.error(el, &ewhat, format!("with a single field, comps must be one of in, pmatch, intersects, found '{}'", comps.join(",")));
                        return None;
                    }
                }
                ExFields::Many(f) => {
                    if comps.len() != f.len() {
                        self.error(
                            el,
                            &ewhat,
                            format!("{} fields but {} comps", f.len(), comps.len()),
                        );
                        return None;
                    }
                    for c in &comps {
                        if Op::from_name(c).is_none() || c == "exists" {
                            self.error(
                                el.clone(),
                                &ewhat,
                                format!("invalid comparison operator '{c}'"),
                            );
                            return None;
                        }
                    }
                    if let Some(bad) = values.iter().find(|t| t.len() != f.len()) {
                        self.error(
                            el,
                            &ewhat,
                            format!(
                                "a values tuple has {} items but there are {} fields",
                                bad.len(),
                                f.len()
                            ),
                        );
                        return None;
                    }
                }
            }
            out.push(Exception {
                name: name.to_string(),
                loc: el,
                fields,
                comps,
                values,
            });
        }
        Some(out)
    }

    fn read_rule(&mut self, fidx: usize, file: &Arc<str>, item: &Y) {
        let Some(name) = self.name_of(item, "rule", file) else {
            return;
        };
        let what = format!("rule '{name}'");
        self.unknown_keys(item, RULE_KEYS, file, &what);
        let here = loc(file, item.pos);
        let errors_before = self.errors.len();
        let cond = self.str_key(item, "condition", file, &what);
        let output = self.str_key(item, "output", file, &what);
        let desc = self.str_key(item, "desc", file, &what);
        let priority = match item.get("priority") {
            None => None,
            Some(p) => match p.as_str().map(str::parse::<Priority>) {
                Some(Ok(pr)) => Some(pr),
                _ => {
                    self.error(
                        loc(file, p.pos),
                        &what,
                        format!("invalid priority '{}'", p.as_str().unwrap_or(p.type_name())),
                    );
                    None
                }
            },
        };
        let tags = match item.get("tags") {
            None => None,
            Some(t) => self.scalars(t, "tags", file, &what),
        };
        let enabled = self.bool_key(item, "enabled", file, &what);
        let skip_unknown = self.bool_key(item, "skip-if-unknown-filter", file, &what);
        let _ = self.bool_key(item, "warn_evttypes", file, &what);
        let _ = self.bool_key(item, "capture", file, &what);
        let source = self.str_key(item, "source", file, &what);
        let exceptions = match item.get("exceptions") {
            None => None,
            Some(v) => self.read_exceptions(v, file, &what),
        };
        let append = self.bool_key(item, "append", file, &what).unwrap_or(false);
        let overrides = self.overrides(item, file, &what);
        if self.errors.len() > errors_before {
            return;
        }
        let existing = self.rule_idx.get(&name).copied();
        if let Some(src) = &source
            && let Some(i) = existing
            && self.rules[i].source != src.0
        {
            self.error(
                here,
                &what,
                format!(
                    "rule redefined with a different source '{}' (was '{}')",
                    src.0, self.rules[i].source
                ),
            );
            return;
        }
        if append {
            if overrides.is_some() {
                self.error(
                    here,
                    &what,
                    "'append' and 'override' cannot be used together".into(),
                );
                return;
            }
            let Some(i) = existing else {
                self.error(
                    here,
                    &what,
                    "Rule has 'append' key but no rule by that name already exists".into(),
                );
                return;
            };
            let r = &mut self.rules[i];
            if let Some((c, _)) = cond {
                r.cond.push(' ');
                r.cond.push_str(&c);
            }
            if let Some(ex) = exceptions {
                merge_exceptions(&mut r.exceptions, ex, true);
            }
            if output.is_some() || desc.is_some() || priority.is_some() || tags.is_some() {
                self.warn(here, &what, "with 'append: true' only 'condition' and 'exceptions' are appended; other keys are ignored".into());
            }
            return;
        }
        if let Some(ov) = overrides {
            let Some(i) = existing else {
                self.error(
                    here,
                    &what,
                    "Rule has 'override' key but no rule by that name already exists".into(),
                );
                return;
            };
            let ov_keys: HashSet<&str> = ov.iter().map(|(k, _, _)| k.as_str()).collect();
            if let Kind::Map(entries) = &item.kind {
                for (k, _) in entries {
                    let kn = k.as_str().unwrap_or("");
                    if !matches!(kn, "rule" | "override" | "source")
                        && RULE_KEYS.contains(&kn)
                        && !ov_keys.contains(kn)
                    {
                        self.error(
                            loc(file, k.pos),
                            &what,
                            format!("key '{kn}' is present without a matching 'override' entry"),
                        );
                    }
                }
            }
            for (k, app, l) in &ov {
                let allowed = if *app {
                    RULE_OVERRIDE_APPEND
                } else {
                    RULE_OVERRIDE_REPLACE
                };
                if !allowed.contains(&k.as_str()) {
                    self.error(
                        l.clone(),
                        &what,
                        format!(
                            "key '{k}' cannot be overridden with '{}'",
                            if *app { "append" } else { "replace" }
                        ),
                    );
                } else if item.get(k).is_none() {
                    self.error(
                        l.clone(),
                        &what,
                        format!("'override' names '{k}' but the item has no '{k}'"),
                    );
                }
            }
            if self.errors.len() > errors_before {
                return;
            }
            let r = &mut self.rules[i];
            for (k, app, _) in ov {
                match k.as_str() {
                    "condition" => {
                        if let Some((c, l)) = &cond {
                            if app {
                                r.cond.push(' ');
                                r.cond.push_str(c);
                            } else {
                                r.cond = c.clone();
                                r.cond_loc = l.clone();
                            }
                        }
                    }
                    "output" => {
                        if let Some((o, l)) = &output {
                            if app {
                                r.output = format!("{} {}", r.output, o.trim());
                            } else {
                                r.output = o.trim().to_string();
                                r.output_loc = l.clone();
                            }
                        }
                    }
                    "desc" => {
                        if let Some((d, _)) = &desc {
                            if app {
                                r.desc = format!("{} {}", r.desc, d);
                            } else {
                                r.desc = d.clone();
                            }
                        }
                    }
                    "tags" => {
                        if let Some(t) = &tags {
                            if app {
                                for x in t {
                                    if !r.tags.contains(x) {
                                        r.tags.push(x.clone());
                                    }
                                }
                            } else {
                                r.tags = t.clone();
                            }
                        }
                    }
                    "priority" => {
                        if let Some(p) = priority {
                            r.priority = p;
                        }
                    }
                    "enabled" => {
                        if let Some(e) = enabled {
                            r.enabled = e;
                        }
                    }
                    "exceptions" => {
                        if let Some(ex) = &exceptions {
                            if app {
                                merge_exceptions(&mut r.exceptions, ex.clone(), true);
                            } else {
                                r.exceptions = ex.clone();
                            }
                        }
                    }
                    "skip-if-unknown-filter" => {
                        if let Some(s) = skip_unknown {
                            r.skip_if_unknown = s;
                        }
                    }
                    _ => {}
                }
            }
            return;
        }
        let full = cond.is_some() || output.is_some() || desc.is_some() || priority.is_some();
        if !full && let Some(e) = enabled {
            match existing {
                Some(i) => self.rules[i].enabled = e,
                None => self.error(
                    here,
                    &what,
                    "Rule has 'enabled' key but no rule by that name already exists".into(),
                ),
            }
            return;
        }
        let mut missing = Vec::new();
        if cond.is_none() {
            missing.push("condition");
        }
        if output.is_none() {
            missing.push("output");
        }
        if desc.is_none() {
            missing.push("desc");
        }
        if priority.is_none() {
            missing.push("priority");
        }
        if !missing.is_empty() {
            self.error(here, &what, format!("rule has no {}", missing.join(", ")));
            return;
        }
        let (Some((cond, cond_loc)), Some((output, output_loc)), Some((desc, _)), Some(priority)) =
            (cond, output, desc, priority)
        else {
            return;
        };
        let source = source.map(|s| s.0).unwrap_or_else(|| "syscall".to_string());
        if source != K8S_SOURCE {
            self.foreign_rule_files.insert(fidx);
        }
        let def = RuleDef {
            name: name.clone(),
            file: fidx,
            loc: here,
            cond,
            cond_loc,
            output: output.trim().to_string(),
            output_loc,
            desc,
            priority,
            tags: tags.unwrap_or_default(),
            enabled: enabled.unwrap_or(true),
            source,
            exceptions: exceptions.unwrap_or_default(),
            skip_if_unknown: skip_unknown.unwrap_or(false),
        };
        match existing {
            Some(i) => self.rules[i] = def,
            None => {
                self.rule_idx.insert(name, self.rules.len());
                self.rules.push(def);
            }
        }
    }
}

fn merge_exceptions(into: &mut Vec<Exception>, new: Vec<Exception>, append_values: bool) {
    for e in new {
        match into.iter_mut().find(|x| x.name == e.name) {
            Some(x) if append_values => {
                for row in e.values {
                    // With a single field, a row of several scalars is one list value.
                    if matches!(x.fields, ExFields::One(_)) && row.len() > 1 {
                        let items = row
                            .into_iter()
                            .flat_map(|v| match v {
                                ExValue::Scalar(s) => vec![s],
                                ExValue::List(l) => l,
                            })
                            .collect();
                        x.values.push(vec![ExValue::List(items)]);
                    } else {
                        x.values.push(row);
                    }
                }
            }
            Some(x) => *x = e,
            None => into.push(e),
        }
    }
}

fn quote_if_spaced(v: &str) -> String {
    if v.contains(' ') && !v.starts_with('"') && !v.starts_with('\'') {
        format!("\"{v}\"")
    } else {
        v.to_string()
    }
}

fn ex_value(v: &ExValue, list_op: bool) -> String {
    match v {
        ExValue::List(items) => format!(
            "({})",
            items
                .iter()
                .map(|i| quote_if_spaced(i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ExValue::Scalar(s) if list_op => format!("({})", quote_if_spaced(s)),
        ExValue::Scalar(s) => quote_if_spaced(s),
    }
}

/// The `and not (...)` text for one exception (empty when it has no values).
fn exception_text(e: &Exception) -> String {
    if e.values.is_empty() {
        return String::new();
    }
    match &e.fields {
        ExFields::Unspecified => String::new(),
        ExFields::One(f) => {
            let comp = e.comps.first().map(String::as_str).unwrap_or("in");
            let vals: Vec<String> = e
                .values
                .iter()
                .flat_map(|row| row.iter())
                .flat_map(|v| match v {
                    ExValue::Scalar(s) => vec![quote_if_spaced(s)],
                    ExValue::List(l) => l.iter().map(|x| quote_if_spaced(x)).collect(),
                })
                .collect();
            format!("({f} {comp} ({}))", vals.join(", "))
        }
        ExFields::Many(fields) => {
            let tuples: Vec<String> = e
                .values
                .iter()
                .map(|row| {
                    let parts: Vec<String> = fields
                        .iter()
                        .zip(&e.comps)
                        .zip(row)
                        .map(|((f, c), v)| {
                            let list_op = Op::from_name(c).is_some_and(Op::takes_list);
                            format!("{f} {c} {}", ex_value(v, list_op))
                        })
                        .collect();
                    format!("({})", parts.join(" and "))
                })
                .collect();
            tuples.join(" or ")
        }
    }
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_delim(c: u8) -> bool {
    is_blank(c) || matches!(c, b'(' | b')' | b',' | b'=')
}

/// Substitutes one list into a condition, as text (see GRAMMAR §5). Returns true if used.
fn substitute_list(cnd: &mut String, name: &str, items: &[String]) -> bool {
    let mut used = false;
    let mut from = 0;
    while let Some(rel) = cnd.get(from..).and_then(|s| s.find(name)) {
        let mut start = from + rel;
        let mut end = start + name.len();
        let b = cnd.as_bytes();
        let ok_left = start == 0 || is_delim(b[start - 1]);
        let ok_right = end >= b.len() || is_delim(b[end]);
        if !(ok_left && ok_right) {
            from = start + 1;
            while from < cnd.len() && !cnd.is_char_boundary(from) {
                from += 1;
            }
            continue;
        }
        while start > 0 && is_blank(b[start - 1]) {
            start -= 1;
        }
        while end < b.len() && is_blank(b[end]) {
            end += 1;
        }
        let sub = items.join(", ");
        if sub.is_empty() {
            if start > 0 && b[start - 1] == b',' {
                start -= 1;
            } else if end < b.len() && b[end] == b',' {
                end += 1;
            }
        }
        let mut new = String::with_capacity(cnd.len() + sub.len() + 2);
        if start > 0 {
            new.push_str(&cnd[..start]);
            new.push(' ');
        }
        new.push_str(&sub);
        new.push(' ');
        let next = new.len();
        new.push_str(&cnd[end..]);
        *cnd = new;
        from = next;
        used = true;
    }
    used
}

struct Resolver<'a> {
    macros: &'a [MacroDef],
    idx: &'a HashMap<String, usize>,
    parsed: Vec<Option<Expr>>,
    resolved: Vec<Option<Expr>>,
    in_progress: Vec<bool>,
    used: Vec<bool>,
}

impl Resolver<'_> {
    /// Inlines macro references; `vis` limits which macros are visible (None = all).
    fn resolve(&mut self, e: &Expr, vis: Option<usize>) -> Result<Expr, (usize, String)> {
        Ok(match e {
            Expr::And(k) => Expr::And(
                k.iter()
                    .map(|x| self.resolve(x, vis))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(k) => Expr::Or(
                k.iter()
                    .map(|x| self.resolve(x, vis))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(x) => Expr::Not(Box::new(self.resolve(x, vis)?)),
            Expr::Check { .. } => e.clone(),
            Expr::Ident { name, at } => {
                let undefined = || (*at, format!("Undefined macro '{name}' used in filter."));
                let Some(&i) = self.idx.get(name) else {
                    return Err(undefined());
                };
                if vis.is_some_and(|v| self.macros[i].index >= v) {
                    return Err(undefined());
                }
                self.macro_expr(i).map_err(|m| (*at, m))?
            }
        })
    }

    fn macro_expr(&mut self, i: usize) -> Result<Expr, String> {
        if let Some(r) = &self.resolved[i] {
            return Ok(r.clone());
        }
        if self.in_progress[i] {
            return Err(format!(
                "macro '{}' references itself (a cycle)",
                self.macros[i].name
            ));
        }
        let Some(parsed) = self.parsed[i].clone() else {
            return Err(format!("macro '{}' has errors", self.macros[i].name));
        };
        self.in_progress[i] = true;
        let vis = self.macros[i].visibility;
        let r = self.resolve(&parsed, Some(vis));
        self.in_progress[i] = false;
        let r = r.map_err(|(_, m)| format!("in macro '{}': {m}", self.macros[i].name))?;
        self.used[i] = true;
        self.resolved[i] = Some(r.clone());
        Ok(r)
    }
}

fn idents(e: &Expr, out: &mut Vec<(String, usize)>) {
    match e {
        Expr::And(k) | Expr::Or(k) => k.iter().for_each(|x| idents(x, out)),
        Expr::Not(x) => idents(x, out),
        Expr::Ident { name, at } => out.push((name.clone(), *at)),
        Expr::Check { .. } => {}
    }
}

impl<'a> Source<'a> {
    fn new(name: &str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            name: Arc::from(name),
            text,
            line_starts,
        }
    }

    /// Best effort: the file position of the text at `offset` in a condition that starts at
    /// `start`. Finds the token at the offset in the file after the condition's start.
    fn locate(&self, start: &Loc, cond: &str, offset: usize) -> Loc {
        let tok: String = cond
            .get(offset..)
            .unwrap_or("")
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(40)
            .collect();
        if tok.is_empty() {
            return start.clone();
        }
        let Some(&ls) = self.line_starts.get(start.line.saturating_sub(1)) else {
            return start.clone();
        };
        let from = self.text[ls..]
            .char_indices()
            .nth(start.col.saturating_sub(1))
            .map(|(i, _)| ls + i)
            .unwrap_or(ls);
        // Occurrences of the token before `offset` in the condition are skipped in the file too.
        let skip = cond
            .get(..offset)
            .map(|p| p.matches(tok.as_str()).count())
            .unwrap_or(0);
        let window = self.text.get(from..).unwrap_or("");
        let window = &window[..window.len().min(cond.len() * 2 + 200)];
        let Some((pos, _)) = window.match_indices(tok.as_str()).nth(skip) else {
            return start.clone();
        };
        let abs = from + pos;
        let line = self.line_starts.partition_point(|&s| s <= abs);
        let lstart = self.line_starts[line - 1];
        Loc {
            file: start.file.clone(),
            line,
            col: self.text[lstart..abs].chars().count() + 1,
        }
    }
}

/// Loads sources in order and compiles the `k8s_audit` rules.
pub fn load(sources: &[(String, String)], catalog: Catalog) -> Result<Compiled, LoadError> {
    let srcs: Vec<Source<'_>> = sources.iter().map(|(n, t)| Source::new(n, t)).collect();
    let mut c = Collector::default();
    for (i, s) in srcs.iter().enumerate() {
        c.read_file(i, s);
    }
    // Items with errors were not collected; the rest is still compiled so that one load
    // reports every error it can.
    let mut errors: Vec<Diagnostic> = std::mem::take(&mut c.errors);
    let mut warnings = std::mem::take(&mut c.warnings);
    let locate = |l: &Loc, cond: &str, at: usize| -> Loc {
        srcs.iter()
            .find(|s| s.name == l.file)
            .map(|s| s.locate(l, cond, at))
            .unwrap_or_else(|| l.clone())
    };

    // Lists: items naming an earlier list are expanded; items with spaces get quoted.
    let mut list_items: Vec<Vec<String>> = Vec::with_capacity(c.lists.len());
    let mut list_refs: Vec<Vec<usize>> = vec![Vec::new(); c.lists.len()];
    for (i, l) in c.lists.iter().enumerate() {
        let mut out = Vec::new();
        for it in &l.items {
            match c.list_idx.get(it) {
                Some(&j) if j < i => {
                    out.extend(list_items[j].iter().cloned());
                    list_refs[i].push(j);
                }
                _ => out.push(quote_if_spaced(it)),
            }
        }
        list_items.push(out);
    }
    let subst = |text: &str, used: &mut Vec<usize>| -> String {
        let mut s = text.to_string();
        for (i, l) in c.lists.iter().enumerate() {
            if s.contains(l.name.as_str()) && substitute_list(&mut s, &l.name, &list_items[i]) {
                used.push(i);
            }
        }
        s
    };

    // Macros: all parsed (with lists substituted); references checked against visibility.
    let mut macro_lists: Vec<Vec<usize>> = Vec::with_capacity(c.macros.len());
    let mut parsed: Vec<Option<Expr>> = Vec::with_capacity(c.macros.len());
    for m in &c.macros {
        let mut used = Vec::new();
        let text = subst(&m.cond, &mut used);
        macro_lists.push(used);
        match parser::parse(&text, &[]) {
            Ok(e) => {
                let mut ids = Vec::new();
                idents(&e, &mut ids);
                for (name, at) in ids {
                    let ok = c
                        .macro_idx
                        .get(&name)
                        .is_some_and(|&j| c.macros[j].index < m.visibility);
                    if !ok {
                        errors.push(Diagnostic {
                            loc: locate(&m.cond_loc, &text, at),
                            item: format!("macro '{}'", m.name),
                            message: format!("Undefined macro '{name}' used in filter."),
                        });
                    }
                }
                parsed.push(Some(e));
            }
            Err(e) => {
                errors.push(Diagnostic {
                    loc: locate(&m.cond_loc, &text, e.at),
                    item: format!("macro '{}'", m.name),
                    message: format!(
                        "syntax error in condition: {} (condition: '{}')",
                        e,
                        m.cond.trim()
                    ),
                });
                parsed.push(None);
            }
        }
    }
    let n_macros = c.macros.len();
    let mut res = Resolver {
        macros: &c.macros,
        idx: &c.macro_idx,
        parsed,
        resolved: vec![None; n_macros],
        in_progress: vec![false; n_macros],
        used: vec![false; n_macros],
    };

    let mut out = Compiled::default();
    let mut lists_used: HashSet<usize> = HashSet::new();
    for r in &c.rules {
        let what = format!("rule '{}'", r.name);
        let k8s = r.source == K8S_SOURCE;
        let mut rule = CompiledRule {
            name: r.name.clone(),
            desc: r.desc.clone(),
            priority: r.priority,
            tags: r.tags.clone(),
            enabled: r.enabled,
            source: r.source.clone(),
            cond: None,
            output: Format::default(),
        };
        if !k8s {
            out.report.rules_skipped += 1;
            out.rules.push(rule);
            continue;
        }
        let mut text = r.cond.clone();
        let mut ex_texts = Vec::new();
        for e in &r.exceptions {
            // Exception fields and operators are validated for k8s_audit rules.
            let fields_list: Vec<&String> = match &e.fields {
                ExFields::One(f) => vec![f],
                ExFields::Many(f) => f.iter().collect(),
                ExFields::Unspecified => {
                    if !e.values.is_empty() {
                        errors.push(Diagnostic {
                            loc: e.loc.clone(),
                            item: format!("{what} exception '{}'", e.name),
                            message: "exception has values but no 'fields'".into(),
                        });
                    }
                    Vec::new()
                }
            };
            for f in fields_list {
                let (name, arg) = split_field(f);
                if let Err(m) = compiler::resolve_field(catalog, name, arg) {
                    errors.push(Diagnostic {
                        loc: e.loc.clone(),
                        item: format!("{what} exception '{}'", e.name),
                        message: m,
                    });
                }
            }
            let t = exception_text(e);
            if !t.is_empty() {
                ex_texts.push(t);
            }
        }
        if !ex_texts.is_empty() {
            text = format!("({text})");
            for t in ex_texts {
                text.push_str(" and not (");
                text.push_str(&t);
                text.push(')');
            }
        }
        let mut used = Vec::new();
        let text = subst(&text, &mut used);
        let ast = match parser::parse(&text, &[]) {
            Ok(a) => a,
            Err(e) => {
                errors.push(Diagnostic {
                    loc: locate(&r.cond_loc, &text, e.at),
                    item: what,
                    message: format!(
                        "syntax error in condition: {} (condition: '{}')",
                        e,
                        r.cond.trim()
                    ),
                });
                continue;
            }
        };
        let resolved = match res.resolve(&ast, None) {
            Ok(x) => x,
            Err((at, m)) => {
                errors.push(Diagnostic {
                    loc: locate(&r.cond_loc, &text, at),
                    item: what,
                    message: m,
                });
                continue;
            }
        };
        lists_used.extend(used);
        let mut legacy = c.legacy_files.contains(&r.file).then(Vec::new);
        let node = match compiler::compile_with(&resolved, catalog, &mut out.slots, &mut legacy) {
            Ok(n) => {
                for w in legacy.unwrap_or_default() {
                    warnings.push(Diagnostic {
                        loc: if uses_offset(&ast, w.at) {
                            locate(&r.cond_loc, &text, w.at)
                        } else {
                            r.cond_loc.clone()
                        },
                        item: what.clone(),
                        message: w.message,
                    });
                }
                n
            }
            Err(e) if r.skip_if_unknown && e.message.starts_with("unknown field") => {
                warnings.push(Diagnostic {
                    loc: r.loc.clone(),
                    item: what,
                    message: format!("{}; rule skipped (skip-if-unknown-filter)", e.message),
                });
                out.report.rules_skipped += 1;
                out.rules.push(rule);
                continue;
            }
            Err(e) => {
                // Offsets of checks inside macros are not in the rule's text: report the rule.
                let l = if uses_offset(&ast, e.at) {
                    locate(&r.cond_loc, &text, e.at)
                } else {
                    r.cond_loc.clone()
                };
                errors.push(Diagnostic {
                    loc: l,
                    item: what,
                    message: e.message,
                });
                continue;
            }
        };
        match output::compile_format(&r.output, catalog, &mut out.slots) {
            Ok(f) => rule.output = f,
            Err(m) => {
                errors.push(Diagnostic {
                    loc: r.output_loc.clone(),
                    item: what,
                    message: format!("invalid output: {m}"),
                });
                continue;
            }
        }
        rule.cond = Some(node);
        out.report.rules_loaded += 1;
        out.rules.push(rule);
    }
    if !errors.is_empty() {
        let order = |d: &Diagnostic| {
            let f = srcs
                .iter()
                .position(|s| s.name == d.loc.file)
                .unwrap_or(usize::MAX);
            (f, d.loc.line, d.loc.col)
        };
        errors.sort_by_key(order);
        return Err(LoadError::Invalid(errors));
    }

    // Usage: lists used by k8s rules directly, by used macros, or inside used lists.
    for (i, u) in res.used.iter().enumerate() {
        if *u {
            lists_used.extend(macro_lists[i].iter().copied());
        }
    }
    let mut stack: Vec<usize> = lists_used.iter().copied().collect();
    while let Some(i) = stack.pop() {
        for &j in &list_refs[i] {
            if lists_used.insert(j) {
                stack.push(j);
            }
        }
    }
    out.report.files = sources.len();
    out.report.macros_loaded = n_macros;
    out.report.lists_loaded = c.lists.len();
    for (i, m) in c.macros.iter().enumerate() {
        if !res.used[i] {
            out.report.macros_skipped += 1;
            if !c.foreign_rule_files.contains(&m.file) {
                warnings.push(Diagnostic {
                    loc: m.loc.clone(),
                    item: format!("macro '{}'", m.name),
                    message: "defined but not used by any k8s_audit rule".into(),
                });
            }
        }
    }
    for (i, l) in c.lists.iter().enumerate() {
        if !lists_used.contains(&i) {
            out.report.lists_skipped += 1;
            if !c.foreign_rule_files.contains(&l.file) {
                warnings.push(Diagnostic {
                    loc: l.loc.clone(),
                    item: format!("list '{}'", l.name),
                    message: "defined but not used by any k8s_audit rule".into(),
                });
            }
        }
    }
    out.report.warnings = warnings.iter().map(|d| d.to_string()).collect();
    Ok(out)
}

/// True when a check at `at` is written in the rule's own text (not inside a macro).
fn uses_offset(e: &Expr, at: usize) -> bool {
    match e {
        Expr::And(k) | Expr::Or(k) => k.iter().any(|x| uses_offset(x, at)),
        Expr::Not(x) => uses_offset(x, at),
        Expr::Check { at: a, .. } => *a == at,
        Expr::Ident { .. } => false,
    }
}

/// Splits `name[arg]` into its parts.
pub fn split_field(f: &str) -> (&str, Option<&str>) {
    match f.find('[') {
        Some(i) if f.ends_with(']') => (&f[..i], Some(&f[i + 1..f.len() - 1])),
        _ => (f, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(c: &str, name: &str, items: &[&str]) -> String {
        let mut s = c.to_string();
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        substitute_list(&mut s, name, &items);
        s
    }

    #[test]
    fn list_substitution_is_textual_and_delimited() {
        assert_eq!(
            sub("ka.verb in (kverbs)", "kverbs", &["get", "list"]),
            "ka.verb in ( get, list )"
        );
        assert_eq!(sub("x in (a, kv, b)", "kv", &["1"]), "x in (a, 1 , b)");
        assert_eq!(sub("x in (kverbsx)", "kverbs", &["1"]), "x in (kverbsx)");
        assert_eq!(sub("x in (a, e)", "e", &[]), "x in (a  )");
        assert_eq!(sub("x in (e, a)", "e", &[]), "x in (   a)");
        assert_eq!(
            sub("ka.target.resource=pods", "pods", &["p"]),
            "ka.target.resource= p "
        );
        assert_eq!(
            sub("x in (l) or y in (l)", "l", &["v"]),
            "x in ( v ) or y in ( v )"
        );
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("15"), Some((0, 15, 0)));
        assert_eq!(parse_version("0.26.0"), Some((0, 26, 0)));
        assert_eq!(parse_version("x"), None);
    }
}
