//! Statuses: the KauditDeployment's own, and the outcome of every input as all deployments see
//! it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::config::TenancyConfig;
use crate::operator::crd::{KauditDeployment, KauditDeploymentStatus};
use crate::operator::inputs::Inputs;

use super::outcome::{ItemKind, Outcome, cond, condition};
use super::plan::RenderError;
use super::{kaudit_config, rules, sinks};

/// The status of a deployment from its inputs' `outcomes` and its `sinks` count; `Ready` says
/// rendered (the controller replaces it once the objects are applied).
pub fn deployment(
    outcomes: &[Outcome],
    sinks: usize,
    generation: Option<i64>,
    now: &Time,
) -> KauditDeploymentStatus {
    let bad_rules: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.kind.valid_condition == cond::RULES_VALID && o.error.is_some())
        .collect();
    let good_rules = outcomes
        .iter()
        .filter(|o| o.kind == ItemKind::FalcoRule && o.error.is_none())
        .count();
    let rules_msg = if bad_rules.is_empty() {
        "all rules valid".to_string()
    } else {
        let first = bad_rules
            .iter()
            .take(5)
            .map(|o| {
                format!(
                    "{}{}: {}",
                    o.namespace
                        .as_ref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default(),
                    o.name,
                    o.error.as_deref().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        format!("{} invalid: {first}", bad_rules.len())
    };
    KauditDeploymentStatus {
        conditions: vec![
            condition(
                cond::RULES_VALID,
                bad_rules.is_empty(),
                if bad_rules.is_empty() {
                    "AllValid"
                } else {
                    "InvalidRules"
                },
                &rules_msg,
                generation,
                now,
            ),
            condition(
                cond::READY,
                true,
                "Rendered",
                "configuration rendered",
                generation,
                now,
            ),
        ],
        observed_generation: generation,
        rules: i32::try_from(good_rules).unwrap_or(i32::MAX),
        invalid_rules: i32::try_from(
            outcomes
                .iter()
                .filter(|o| o.kind == ItemKind::FalcoRule && o.error.is_some())
                .count(),
        )
        .unwrap_or(i32::MAX),
        sinks: i32::try_from(sinks).unwrap_or(i32::MAX),
    }
}

/// The status of every input, the same whichever deployment asks: each is validated as every
/// [`KauditDeployment`] loads it (their `defaultRules` decide which macros and lists exist), and
/// is valid only if valid for all; with no deployment, as the default deployment would. The
/// second value says whether any deployment exists (a valid input is then `Ready`).
pub fn input_outcomes(
    deployments: &[KauditDeployment],
    inputs: &Inputs,
) -> Result<(Vec<Outcome>, bool), RenderError> {
    let mut variants: BTreeMap<bool, Vec<String>> = BTreeMap::new();
    for kd in deployments {
        variants
            .entry(kd.spec.default_rules)
            .or_default()
            .push(format!(
                "{}/{}",
                kd.namespace().unwrap_or_default(),
                kd.name_any()
            ));
    }
    if variants.is_empty() {
        variants.insert(true, Vec::new());
    }
    // Rules depend on the variant; every variant yields the same items in the same order.
    let mut per_variant: Vec<(Vec<String>, Vec<Outcome>)> = Vec::new();
    for (default_rules, names) in variants.into_iter().rev() {
        let mut outcomes = Vec::new();
        rules::files(default_rules, inputs, &mut outcomes)?;
        per_variant.push((names, outcomes));
    }
    let mut merged = merge(&per_variant);
    // Sinks depend on the deployment's tenancy limits (egress list, file cap).
    let mut limits: Vec<(TenancyConfig, Vec<String>)> = Vec::new();
    for kd in deployments {
        let t = kaudit_config::tenancy(&kd.spec.tenancy);
        let name = format!("{}/{}", kd.namespace().unwrap_or_default(), kd.name_any());
        match limits.iter_mut().find(|(l, _)| *l == t) {
            Some((_, names)) => names.push(name),
            None => limits.push((t, vec![name])),
        }
    }
    if limits.is_empty() {
        limits.push((kaudit_config::tenancy(&Default::default()), Vec::new()));
    }
    let per_limits: Vec<(Vec<String>, Vec<Outcome>)> = limits
        .into_iter()
        .map(|(t, names)| {
            let mut outcomes = Vec::new();
            sinks::render_all(inputs, &t.sink_rules(), &mut outcomes);
            (names, outcomes)
        })
        .collect();
    merged.extend(merge(&per_limits));
    Ok((merged, !deployments.is_empty()))
}

/// One outcome per item from the outcomes of each variant (every variant yields the same items
/// in the same order): invalid when invalid for any, naming the deployments when not for all.
fn merge(per_variant: &[(Vec<String>, Vec<Outcome>)]) -> Vec<Outcome> {
    let count = per_variant.first().map_or(0, |(_, o)| o.len());
    (0..count)
        .map(|i| {
            let failing: Vec<&(Vec<String>, Vec<Outcome>)> = per_variant
                .iter()
                .filter(|(_, o)| o[i].error.is_some())
                .collect();
            match failing.first() {
                None => per_variant[0].1[i].clone(),
                // Invalid for every deployment: the error alone says it.
                Some((_, o)) if failing.len() == per_variant.len() => o[i].clone(),
                // Invalid for some: say for which.
                Some((names, o)) => {
                    let mut out = o[i].clone();
                    let e = out.error.take().unwrap_or_default();
                    out.error = Some(format!("for KauditDeployment {}: {e}", names.join(", ")));
                    out
                }
            }
        })
        .collect()
}
