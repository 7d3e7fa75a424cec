//! The rules files and the rules ConfigMap: kaudit's defaults, the cluster's rules files in
//! order, then one file per namespace of its scoped rules, each input validated by the engine.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::operator::crd::{FalcoRule, FalcoRuleSpec, FalcoRulesFile};
use crate::operator::inputs::Inputs;
use crate::operator::tenancy::{self, TenancyError};
use crate::rules::{LoadError, LoadOptions, RuleLimits, Ruleset, TENANT_FILE_PREFIX};

use super::limits::{self, MAX_RULE_BYTES, MAX_RULES_BYTES};
use super::object::Object;
use super::outcome::{ItemKind, Outcome};
use super::plan::{Plan, RenderError, key_safe, yaml};

/// Why a rule or a rules file was left out (its status says so).
#[derive(Debug, thiserror::Error)]
pub enum RuleRefusal {
    /// A tenant rule breaks a tenancy rule (or does not parse on its own).
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// The rules engine refused it on top of the cluster files.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Each tenant rule loads alone, but not all of them together.
    #[error("the combined rules do not load: {0}")]
    Combined(LoadError),
    /// A rules file names neither or both of its sources.
    #[error("set exactly one of `rules` and `configMapRef`")]
    Source,
    /// A rules file's ConfigMap (or its key) is missing.
    #[error("ConfigMap {namespace}/{name} has no key {key:?}")]
    NoKey {
        /// The ConfigMap's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// The input is larger than one input may be.
    #[error("{bytes} bytes rendered, more than the {max} one input may take")]
    TooLarge {
        /// Its rendered size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The inputs together would pass the rules ConfigMap's limit, and this one's namespace
    /// holds the most.
    #[error(
        "left out: the rules ConfigMap would pass {max} bytes, and namespace {namespace} holds the most rules"
    )]
    NoRoom {
        /// The namespace.
        namespace: String,
        /// The limit.
        max: usize,
    },
    /// The rule could not be written as YAML (a defect).
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// Bytes a namespace's rules file adds besides its rules (key, heading), counted per rule.
const NS_FILE_OVERHEAD: usize = 160;

/// Renders one tenant rule into a rules-file item, or says why it cannot be.
pub fn render_rule(ns: &str, name: &str, spec: &FalcoRuleSpec) -> Result<Value, RuleRefusal> {
    let priority = tenancy::check_rule_fields(spec)?;
    let condition = tenancy::scoped_condition(ns, spec)?;
    Ok(json!({
        "rule": tenancy::scoped_rule_name(ns, name, &spec.rule),
        "desc": if spec.desc.is_empty() { spec.rule.clone() } else { spec.desc.clone() },
        "condition": condition,
        "output": tenancy::scoped_output(&spec.output),
        "priority": priority.as_str(),
        "source": "k8s_audit",
        "tags": spec.tags,
        "enabled": spec.enabled,
    }))
}

/// Where tenant rules are loaded from while checking them: the per-namespace files, the
/// combined trial and one rule alone (`50-ns-<ns>/<name>`).
const TENANT_TRIAL: &str = "<namespace rules>";

/// Loads `sources` as kaudit will, with the cost limits of tenant rules on the tenant inputs.
fn load_check(sources: &[(String, String)]) -> Result<(), LoadError> {
    let mut limits = RuleLimits::tenant();
    limits.files.push(TENANT_TRIAL.to_string());
    Ruleset::load_sources_limited(sources, &LoadOptions::default(), Some(&limits)).map(|_| ())
}

/// Rule files and their outcomes: cluster files first (by order, then name), then one file per
/// namespace (by namespace), each rule validated alone against the cluster files.
pub fn files(
    default_rules: bool,
    inputs: &Inputs,
    outcomes: &mut Vec<Outcome>,
) -> Result<Vec<(String, String)>, RenderError> {
    let mut files: Vec<(String, String)> = Vec::new();
    if default_rules {
        files.push((
            "00-kaudit-default.yaml".into(),
            crate::rules::DEFAULT_RULES.to_string(),
        ));
    }
    let mut cluster: Vec<&FalcoRulesFile> = inputs.rules_files.iter().collect();
    cluster.sort_by_key(|f| (f.spec.order, f.name_any()));
    for (i, f) in cluster.into_iter().enumerate() {
        let name = f.name_any();
        let key = format!("10-cluster-{i:03}-{}.yaml", key_safe(&name));
        let text = match (&f.spec.rules, &f.spec.config_map_ref) {
            (Some(t), None) => Ok(t.clone()),
            (None, Some(r)) => inputs
                .config_maps
                .get(&(r.namespace.clone(), r.name.clone()))
                .and_then(|d| d.get(&r.key))
                .cloned()
                .ok_or_else(|| RuleRefusal::NoKey {
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                    key: r.key.clone(),
                }),
            _ => Err(RuleRefusal::Source),
        };
        let used: usize = files.iter().map(|(k, t)| k.len() + t.len()).sum();
        let checked = text.and_then(|t| {
            if used + t.len() > MAX_RULES_BYTES {
                return Err(RuleRefusal::TooLarge {
                    bytes: t.len(),
                    max: MAX_RULES_BYTES.saturating_sub(used),
                });
            }
            let mut trial = files.clone();
            trial.push((key.clone(), t.clone()));
            load_check(&trial).map(|()| t).map_err(RuleRefusal::from)
        });
        let (rendered_name, error) = match checked {
            Ok(t) => {
                files.push((key.clone(), t));
                (Some(key), None)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        outcomes.push(Outcome {
            kind: ItemKind::FalcoRulesFile,
            namespace: None,
            name,
            generation: f.metadata.generation,
            rendered_name,
            error,
        });
    }
    let base = files.clone();
    let mut rules: Vec<&FalcoRule> = inputs.rules.iter().collect();
    rules.sort_by_key(|r| (r.namespace().unwrap_or_default(), r.name_any()));
    // Render every rule (tenancy checks) first.
    let rendered: Vec<(&FalcoRule, String, String, Result<Value, RuleRefusal>)> = rules
        .into_iter()
        .map(|r| {
            let ns = r.namespace().unwrap_or_default();
            let name = r.name_any();
            let item = render_rule(&ns, &name, &r.spec).and_then(|item| {
                let bytes = yaml("rule", &item)?.len();
                if bytes > MAX_RULE_BYTES {
                    return Err(RuleRefusal::TooLarge {
                        bytes,
                        max: MAX_RULE_BYTES,
                    });
                }
                Ok(item)
            });
            (r, ns, name, item)
        })
        .collect();
    // Tenant rules cannot refer to each other (no macros, lists or overrides, unique names), so
    // when all of them load together on top of the cluster files each is valid: one engine load
    // in the usual case. Only when that fails is each rule loaded alone to find the culprits.
    let mut together = base.clone();
    let all_items: Vec<Value> = rendered
        .iter()
        .filter_map(|(_, _, _, i)| i.as_ref().ok().cloned())
        .collect();
    together.push((TENANT_TRIAL.into(), yaml("namespace rules", &all_items)?));
    let all_load = load_check(&together).is_ok();
    // Accepted rule items: (outcome index, namespace, item, bytes).
    let mut accepted: Vec<(usize, String, Value, usize)> = Vec::new();
    for (r, ns, name, item) in rendered {
        let result = item.and_then(|item| {
            if all_load {
                return Ok(item);
            }
            let text = yaml("rule", &vec![item.clone()])?;
            let mut trial = base.clone();
            trial.push((format!("{TENANT_FILE_PREFIX}{ns}/{name}"), text));
            load_check(&trial)?;
            Ok(item)
        });
        let (rendered_name, error) = match result {
            Ok(item) => {
                let bytes = yaml("rule", &item)?.len();
                accepted.push((outcomes.len(), ns.clone(), item, bytes));
                (
                    Some(tenancy::scoped_rule_name(&ns, &name, &r.spec.rule)),
                    None,
                )
            }
            Err(e) => (None, Some(e.to_string())),
        };
        outcomes.push(Outcome {
            kind: ItemKind::FalcoRule,
            namespace: Some(ns),
            name,
            generation: r.metadata.generation,
            rendered_name,
            error,
        });
    }
    // Everything must fit in one ConfigMap: the namespace holding the most gives way first.
    let room = MAX_RULES_BYTES.saturating_sub(base.iter().map(|(k, t)| k.len() + t.len()).sum());
    let sizes: Vec<(Option<&str>, usize)> = accepted
        .iter()
        .map(|(_, ns, _, b)| (Some(ns.as_str()), b + NS_FILE_OVERHEAD))
        .collect();
    let evicted = limits::evict(&sizes, room);
    let mut per_ns: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for ((i, ns, item, _), out) in accepted.into_iter().zip(evicted) {
        if out {
            outcomes[i].rendered_name = None;
            outcomes[i].error = Some(
                RuleRefusal::NoRoom {
                    namespace: ns,
                    max: MAX_RULES_BYTES,
                }
                .to_string(),
            );
        } else {
            per_ns.entry(ns).or_default().push(item);
        }
    }
    for (ns, items) in per_ns {
        let text = format!(
            "# Rules of namespace {ns}, rendered by the kaudit operator; each is scoped to {ns}.\n{}",
            yaml("namespace rules", &items)?
        );
        files.push((format!("{TENANT_FILE_PREFIX}{ns}.yaml"), text));
    }
    // Each rule passed alone; make sure the whole set loads too, else keep the cluster files.
    if let Err(e) = load_check(&files) {
        for o in outcomes.iter_mut() {
            if o.kind == ItemKind::FalcoRule && o.error.is_none() {
                o.error = Some(RuleRefusal::Combined(e.clone()).to_string());
                o.rendered_name = None;
            }
        }
        files = base;
    }
    Ok(files)
}

/// Where kaudit and Falco find the rules files, in load order.
pub fn paths(files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .map(|(k, _)| format!("{}/{k}", super::plan::RULES_DIR))
        .collect()
}

/// The ConfigMap holding the rules files (mounted by kaudit and Falco).
pub fn config_map(plan: &Plan, files: &[(String, String)]) -> Object {
    Object::ConfigMap(ConfigMap {
        metadata: plan.meta(&plan.rules_config_map(), "kaudit"),
        data: Some(files.iter().cloned().collect()),
        ..ConfigMap::default()
    })
}
