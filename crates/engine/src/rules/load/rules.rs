//! Rules: reading `rule` items, a full definition or a change to an earlier one (`append`,
//! `override: {key: append|replace}`, or `enabled` alone).

use std::collections::HashSet;
use std::sync::Arc;

use super::exceptions::{self, merge_exceptions};
use super::items::{K8S_SOURCE, RuleDef};
use super::keys::Reader;
use super::source::loc;
use crate::alert::Priority;
use crate::rules::yaml::{Kind, Node as Y};

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

pub(super) fn read(r: &mut Reader<'_>, fidx: usize, file: &Arc<str>, item: &Y) {
    let Some(name) = r.name_of(item, "rule", file) else {
        return;
    };
    let what = format!("rule '{name}'");
    r.unknown_keys(item, RULE_KEYS, file, &what);
    let here = loc(file, item.pos);
    let errors_before = r.diags.errors.len();
    let cond = r.str_key(item, "condition", file, &what);
    let output = r.str_key(item, "output", file, &what);
    let desc = r.str_key(item, "desc", file, &what);
    let priority = match item.get("priority") {
        None => None,
        Some(p) => match p.as_str().map(str::parse::<Priority>) {
            Some(Ok(pr)) => Some(pr),
            _ => {
                r.diags.error(
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
        Some(t) => r.scalars(t, "tags", file, &what),
    };
    let enabled = r.bool_key(item, "enabled", file, &what);
    let skip_unknown = r.bool_key(item, "skip-if-unknown-filter", file, &what);
    let _ = r.bool_key(item, "warn_evttypes", file, &what);
    let _ = r.bool_key(item, "capture", file, &what);
    let source = r.str_key(item, "source", file, &what);
    let exceptions = match item.get("exceptions") {
        None => None,
        Some(v) => exceptions::read(r, v, file, &what),
    };
    let append = r.bool_key(item, "append", file, &what).unwrap_or(false);
    let overrides = r.overrides(item, file, &what);
    if r.diags.errors.len() > errors_before {
        return;
    }
    let existing = r.items.rule_idx.get(&name).copied();
    if let Some(src) = &source
        && let Some(i) = existing
        && r.items.rules[i].source != src.0
    {
        r.diags.error(
            here,
            &what,
            format!(
                "rule redefined with a different source '{}' (was '{}')",
                src.0, r.items.rules[i].source
            ),
        );
        return;
    }
    if append {
        if overrides.is_some() {
            r.diags.error(
                here,
                &what,
                "'append' and 'override' cannot be used together".into(),
            );
            return;
        }
        let Some(i) = existing else {
            r.diags.error(
                here,
                &what,
                "Rule has 'append' key but no rule by that name already exists".into(),
            );
            return;
        };
        let rule = &mut r.items.rules[i];
        if let Some((c, _)) = cond {
            rule.cond.push(' ');
            rule.cond.push_str(&c);
        }
        if let Some(ex) = exceptions {
            merge_exceptions(&mut rule.exceptions, ex, true);
        }
        if output.is_some() || desc.is_some() || priority.is_some() || tags.is_some() {
            r.diags.warn(here, &what, "with 'append: true' only 'condition' and 'exceptions' are appended; other keys are ignored".into());
        }
        return;
    }
    if let Some(ov) = overrides {
        let Some(i) = existing else {
            r.diags.error(
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
                    r.diags.error(
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
                r.diags.error(
                    l.clone(),
                    &what,
                    format!(
                        "key '{k}' cannot be overridden with '{}'",
                        if *app { "append" } else { "replace" }
                    ),
                );
            } else if item.get(k).is_none() {
                r.diags.error(
                    l.clone(),
                    &what,
                    format!("'override' names '{k}' but the item has no '{k}'"),
                );
            }
        }
        if r.diags.errors.len() > errors_before {
            return;
        }
        let rule = &mut r.items.rules[i];
        for (k, app, _) in ov {
            match k.as_str() {
                "condition" => {
                    if let Some((c, l)) = &cond {
                        if app {
                            rule.cond.push(' ');
                            rule.cond.push_str(c);
                        } else {
                            rule.cond = c.clone();
                            rule.cond_loc = l.clone();
                        }
                    }
                }
                "output" => {
                    if let Some((o, l)) = &output {
                        if app {
                            rule.output = format!("{} {}", rule.output, o.trim());
                        } else {
                            rule.output = o.trim().to_string();
                            rule.output_loc = l.clone();
                        }
                    }
                }
                "desc" => {
                    if let Some((d, _)) = &desc {
                        if app {
                            rule.desc = format!("{} {}", rule.desc, d);
                        } else {
                            rule.desc = d.clone();
                        }
                    }
                }
                "tags" => {
                    if let Some(t) = &tags {
                        if app {
                            for x in t {
                                if !rule.tags.contains(x) {
                                    rule.tags.push(x.clone());
                                }
                            }
                        } else {
                            rule.tags = t.clone();
                        }
                    }
                }
                "priority" => {
                    if let Some(p) = priority {
                        rule.priority = p;
                    }
                }
                "enabled" => {
                    if let Some(e) = enabled {
                        rule.enabled = e;
                    }
                }
                "exceptions" => {
                    if let Some(ex) = &exceptions {
                        if app {
                            merge_exceptions(&mut rule.exceptions, ex.clone(), true);
                        } else {
                            rule.exceptions = ex.clone();
                        }
                    }
                }
                "skip-if-unknown-filter" => {
                    if let Some(s) = skip_unknown {
                        rule.skip_if_unknown = s;
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
            Some(i) => r.items.rules[i].enabled = e,
            None => r.diags.error(
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
        r.diags
            .error(here, &what, format!("rule has no {}", missing.join(", ")));
        return;
    }
    let (Some((cond, cond_loc)), Some((output, output_loc)), Some((desc, _)), Some(priority)) =
        (cond, output, desc, priority)
    else {
        return;
    };
    let source = source.map(|s| s.0).unwrap_or_else(|| "syscall".to_string());
    if source != K8S_SOURCE {
        r.items.foreign_rule_files.insert(fidx);
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
        Some(i) => r.items.rules[i] = def,
        None => {
            r.items.rule_idx.insert(name, r.items.rules.len());
            r.items.rules.push(def);
        }
    }
}
