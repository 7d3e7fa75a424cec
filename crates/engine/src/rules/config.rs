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
