//! The rules engine's configuration: the `rules:` section of kaudit's config file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::alert::Priority;

/// How many alerts one event may raise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMatching {
    /// Falco's default: the first matching enabled rule in definition order, at most one alert.
    #[default]
    First,
    /// Every matching rule raises an alert.
    All,
}

/// The embedded rules engine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Falco rules files, loaded in order; empty means kaudit's embedded default ruleset.
    pub files: Vec<PathBuf>,
    /// `first` (Falco's default) or `all`.
    pub rule_matching: RuleMatching,
    /// Rules below this priority are dropped at load time (Falco's `priority` option).
    pub min_priority: Priority,
    /// How often the files are checked for changes, in seconds.
    pub reload_interval_secs: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            rule_matching: RuleMatching::First,
            min_priority: Priority::Debug,
            reload_interval_secs: 5,
        }
    }
}

/// Limits on one rule's cost, so that a rule written by a tenant cannot make everyone's events
/// slower: a rule over a limit is an error of the load, naming the rule and the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleLimits {
    /// The longest condition text (with its exceptions, after list substitution), in bytes.
    pub max_condition_bytes: usize,
    /// The most distinct fields the condition and output may read together.
    pub max_fields: usize,
    /// The rules files the limits apply to: those with a path component (split at `/`) that
    /// starts with one of these; empty applies them to every rule.
    pub files: Vec<String>,
}

/// The file-name prefix of the rules files the operator renders from namespaced `FalcoRule`s.
pub const TENANT_FILE_PREFIX: &str = "50-ns-";

impl RuleLimits {
    /// The limits for tenant rules: 32 KiB of condition (the operator's limit on a whole
    /// rendered rule) and 64 distinct fields per rule (an upstream Falco rule reads at most
    /// about a dozen), applied to the operator's per-namespace rules files
    /// ([`TENANT_FILE_PREFIX`]).
    pub fn tenant() -> RuleLimits {
        RuleLimits {
            max_condition_bytes: 32 * 1024,
            max_fields: 64,
            files: vec![TENANT_FILE_PREFIX.to_string()],
        }
    }

    /// True when the limits apply to rules defined in `file`.
    pub fn applies_to(&self, file: &str) -> bool {
        self.files.is_empty()
            || file
                .split('/')
                .any(|c| self.files.iter().any(|p| c.starts_with(p.as_str())))
    }
}
