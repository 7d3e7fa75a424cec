//! Any text as a rules file: loading must return Ok or Err, never panic or hang.
#![no_main]

use kaudit_engine::rules::{LoadOptions, Ruleset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kaudit_engine::rules::yaml::parse(text);
        let _ = Ruleset::load_sources(
            &[("fuzz.yaml".to_string(), text.to_string())],
            &LoadOptions::default(),
        );
    }
});
