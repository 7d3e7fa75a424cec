//! Router filters: a Falco-syntax condition over an alert. `rule`, `priority`, `source`,
//! `hostname`, `uuid` and `tags` (a list) are bare-identifier fields; every output field is
//! addressed by its own name (`ka.target.namespace`, `ka.uri.param[command]`) and read from
//! `output_fields`, where arrays are lists and `null` is missing.

use super::compiler::{self, ALERT_BARE_FIELDS, Catalog, Node, Slots};
use super::eval::{self, Ctx, Source};
use super::parser;
use crate::alert::Alert;

/// A compiled alert filter.
#[derive(Clone, Debug)]
pub struct AlertFilter {
    node: Node,
    slots: Slots,
}

impl AlertFilter {
    /// Compiles a filter expression. Macros do not exist here: any other bare identifier is
    /// an error.
    pub fn compile(expr: &str) -> Result<AlertFilter, String> {
        super::with_big_stack(|| Self::compile_here(expr))
    }

    fn compile_here(expr: &str) -> Result<AlertFilter, String> {
        let ast =
            parser::parse(expr, ALERT_BARE_FIELDS).map_err(|e| format!("filter '{expr}': {e}"))?;
        let mut slots = Slots::default();
        let node = compiler::compile(&ast, Catalog::Alert, &mut slots).map_err(|e| {
            let msg = if e.message.starts_with("Undefined macro") {
                format!(
                    "unknown identifier at offset {} (alert fields are {} and output field names)",
                    e.at,
                    ALERT_BARE_FIELDS.join(", ")
                )
            } else {
                format!("{} at offset {}", e.message, e.at)
            };
            format!("filter '{expr}': {msg}")
        })?;
        Ok(AlertFilter { node, slots })
    }

    /// True when the alert passes the filter.
    pub fn matches(&self, a: &Alert) -> bool {
        let mut ctx = Ctx::new(Source::Alert(a), &self.slots.list);
        eval::eval(&self.node, &mut ctx)
    }
}
