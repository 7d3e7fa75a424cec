//! What became of each input, and the conditions that say so.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::operator::crd::RuleStatus;
pub use crate::operator::crd::cond;
pub use crate::operator::inputs::ItemKind;

/// What became of one input resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The kind.
    pub kind: ItemKind,
    /// Namespace (namespaced kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The name it has in the rendered config (rule name, sink name), when accepted.
    pub rendered_name: Option<String>,
    /// Why it was refused.
    pub error: Option<String>,
}

/// A status condition.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The status an input gets from its outcome. `deployed`: some KauditDeployment exists to load
/// it; a valid input is `Ready` only then.
pub fn item_status(o: &Outcome, deployed: bool, now: &Time) -> RuleStatus {
    let type_ = o.kind.valid_condition;
    let (ok, reason, msg) = match &o.error {
        None => (true, "Accepted", "accepted".to_string()),
        Some(e) => (false, "Invalid", e.clone()),
    };
    let ready = if ok && !deployed {
        condition(
            cond::READY,
            false,
            "NoDeployment",
            "valid, but no KauditDeployment exists to load it",
            o.generation,
            now,
        )
    } else {
        condition(cond::READY, ok, reason, &msg, o.generation, now)
    };
    RuleStatus {
        conditions: vec![condition(type_, ok, reason, &msg, o.generation, now), ready],
        observed_generation: o.generation,
        rendered_name: o.rendered_name.clone(),
    }
}

/// Keeps a condition's `lastTransitionTime` when its status did not change.
pub fn carry_transition_times(old: &[Condition], new: &mut [Condition]) {
    for c in new.iter_mut() {
        if let Some(o) = old
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), with `…` when cut: status messages
/// and Event notes stay small.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
