//! Filters, tenant scopes and cursors, and the one `WHERE` clause builder both stores use, so
//! that a filter selects the same alerts on SQLite and on PostgreSQL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{StoreError, priority_rank};
use crate::alert::Priority;

/// What a list of alerts (or a count) is restricted to; every field is optional and they
/// combine with AND.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Alerts at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Alerts before this time.
    pub until: Option<DateTime<Utc>>,
    /// Alerts at or above this priority.
    pub priority: Option<Priority>,
    /// The rule's exact name.
    pub rule: Option<String>,
    /// The event source (`k8s_audit`).
    pub source: Option<String>,
    /// Where the alert was raised (`embedded`, `falco`).
    pub origin: Option<String>,
    /// Tags every alert must have.
    pub tags: Vec<String>,
    /// `ka.target.namespace`.
    pub namespace: Option<String>,
    /// `ka.user.name`.
    pub user: Option<String>,
    /// `ka.target.resource`.
    pub resource: Option<String>,
    /// `ka.verb`.
    pub verb: Option<String>,
    /// Words that must all appear in `output` (full-text search).
    pub text: Option<String>,
}

/// Which alerts a reader may see at all: a token bound to namespaces sees only alerts about
/// those namespaces (never cluster-scoped ones, nor another team's, even in counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every alert.
    All,
    /// Alerts whose namespace is one of these.
    Namespaces(Vec<String>),
}

/// A bound value of a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
}

/// Which placeholder syntax and full-text operator to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `?N`, FTS5.
    Sqlite,
    /// `$N`, `to_tsvector`.
    Postgres,
}

/// A `WHERE` clause (with `WHERE`, or empty) and its values.
#[derive(Clone, Debug, Default)]
pub struct Where {
    /// The clause.
    pub sql: String,
    /// Values, in placeholder order.
    pub params: Vec<Param>,
    parts: Vec<String>,
}

impl Where {
    /// The placeholder of the next value.
    pub fn next_placeholder(&self, d: Dialect) -> String {
        let n = self.params.len() + 1;
        match d {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// Adds `template` with `{}` standing for the placeholder of `p`.
    pub fn and(&mut self, d: Dialect, template: &str, p: Param) {
        let ph = self.next_placeholder(d);
        self.parts.push(template.replace("{}", &ph));
        self.params.push(p);
    }

    /// Adds a condition that takes no value.
    pub fn and_plain(&mut self, sql: &str) {
        self.parts.push(sql.to_string());
    }

    fn finish(mut self) -> Where {
        self.sql = if self.parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.parts.join(" AND "))
        };
        self
    }
}

/// The clause selecting `filter` within `scope`, and before `cursor` (a `seq`) when given.
pub fn build(f: &Filter, scope: &Scope, before: Option<i64>, d: Dialect) -> Where {
    let mut w = Where::default();
    match scope {
        Scope::All => {}
        Scope::Namespaces(ns) if ns.is_empty() => w.and_plain("1 = 0"),
        Scope::Namespaces(ns) => {
            let mut phs = Vec::new();
            for n in ns {
                phs.push(w.next_placeholder(d));
                w.params.push(Param::Text(n.clone()));
            }
            w.parts.push(format!("namespace IN ({})", phs.join(", ")));
        }
    }
    if let Some(s) = before {
        w.and(d, "seq < {}", Param::Int(s));
    }
    if let Some(t) = f.since {
        w.and(d, "time_ms >= {}", Param::Int(t.timestamp_millis()));
    }
    if let Some(t) = f.until {
        w.and(d, "time_ms < {}", Param::Int(t.timestamp_millis()));
    }
    if let Some(p) = f.priority {
        w.and(d, "priority <= {}", Param::Int(priority_rank(p)));
    }
    for (col, v) in [
        ("rule", &f.rule),
        ("source", &f.source),
        ("origin", &f.origin),
        ("namespace", &f.namespace),
        ("username", &f.user),
        ("resource", &f.resource),
        ("verb", &f.verb),
    ] {
        if let Some(v) = v {
            w.and(d, &format!("{col} = {{}}"), Param::Text(v.clone()));
        }
    }
    for t in &f.tags {
        w.and(
            d,
            "tags LIKE {}",
            Param::Text(format!("%,{},%", like_escape(t))),
        );
    }
    if let Some(text) = f.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        match d {
            Dialect::Sqlite => w.and(
                d,
                "seq IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH {})",
                Param::Text(fts5_phrases(text)),
            ),
            Dialect::Postgres => w.and(
                d,
                "output_tsv @@ plainto_tsquery('simple', {})",
                Param::Text(text.to_string()),
            ),
        }
    }
    w.finish()
}

/// Tags never hold `%` or `_` in practice; they are dropped rather than escaped, so a tag
/// filter cannot widen into a pattern.
fn like_escape(t: &str) -> String {
    t.chars()
        .filter(|c| *c != '%' && *c != '_' && *c != ',')
        .collect()
}

/// Each word as an FTS5 string (so `-`, `:`, `"` are words, not query syntax); all must match.
fn fts5_phrases(text: &str) -> String {
    text.split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The cursor after the alert at `seq`.
pub fn cursor_after(seq: i64) -> String {
    format!("s{seq}")
}

/// Reads a cursor back.
pub fn parse_cursor(c: &str) -> Result<i64, StoreError> {
    c.strip_prefix('s')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::BadRequest(format!("invalid cursor {c:?}")))
}

/// The same selection as [`build`], on one alert in memory (for the live feed). Full-text
/// search is approximated by every word appearing in `output`, ignoring case.
pub fn matches(f: &Filter, scope: &Scope, a: &super::StoredAlert) -> bool {
    let d = super::Derived::of(&a.alert);
    if let Scope::Namespaces(ns) = scope
        && !d.namespace.as_ref().is_some_and(|n| ns.contains(n))
    {
        return false;
    }
    let eq =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    let al = &a.alert;
    f.since.is_none_or(|t| al.time >= t)
        && f.until.is_none_or(|t| al.time < t)
        && f.priority.is_none_or(|p| al.priority.at_least(p))
        && eq(&f.rule, Some(&al.rule))
        && eq(&f.source, Some(&al.source))
        && eq(&f.origin, Some(&d.origin))
        && eq(&f.namespace, d.namespace.as_deref())
        && eq(&f.user, d.user.as_deref())
        && eq(&f.resource, d.resource.as_deref())
        && eq(&f.verb, d.verb.as_deref())
        && f.tags.iter().all(|t| al.tags.contains(t))
        && f.text.as_deref().is_none_or(|t| {
            let out = al.output.to_lowercase();
            t.split_whitespace()
                .all(|w| out.contains(&w.to_lowercase()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_number_their_placeholders_per_dialect() {
        let f = Filter {
            rule: Some("r".into()),
            tags: vec!["k8s".into()],
            text: Some("secret \"x".into()),
            ..Filter::default()
        };
        let scope = Scope::Namespaces(vec!["a".into(), "b".into()]);
        let w = build(&f, &scope, Some(9), Dialect::Postgres);
        assert!(
            w.sql
                .starts_with(" WHERE namespace IN ($1, $2) AND seq < $3"),
            "{}",
            w.sql
        );
        assert_eq!(w.params.len(), 6);
        let w = build(&f, &scope, None, Dialect::Sqlite);
        assert!(w.sql.contains("rule = ?3"), "{}", w.sql);
        assert_eq!(w.params[4], Param::Text("\"secret\" \"\"\"x\"".into()));
        let none = build(
            &Filter::default(),
            &Scope::Namespaces(vec![]),
            None,
            Dialect::Sqlite,
        );
        assert_eq!(none.sql, " WHERE 1 = 0");
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        assert_eq!(parse_cursor(&cursor_after(42)).unwrap(), 42);
        assert!(parse_cursor("42").is_err());
    }
}
