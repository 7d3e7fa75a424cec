//! Any JSON object as an audit event, evaluated by the default ruleset.
#![no_main]

use std::sync::OnceLock;

use kaudit_engine::audit::AuditEvent;
use kaudit_engine::rules::{LoadOptions, Ruleset};
use libfuzzer_sys::fuzz_target;

fn rules() -> Option<&'static Ruleset> {
    static RS: OnceLock<Option<Ruleset>> = OnceLock::new();
    RS.get_or_init(|| {
        Ruleset::load_default(&LoadOptions::default())
            .ok()
            .map(|(r, _)| r)
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(ev) = AuditEvent::from_json(json) else {
        return;
    };
    if let Some(rs) = rules() {
        let mut out = Vec::new();
        rs.evaluate(&ev, &mut out);
    }
});
