//! Any text as a condition and as an alert filter.
#![no_main]

use kaudit_engine::rules::{AlertFilter, parser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parser::parse(text, &[]);
        let _ = AlertFilter::compile(text);
    }
});
