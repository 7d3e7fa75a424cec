//! Any text as kaudit's config file: loading must return the config or an error naming the
//! key, never panic or hang; and a config that loads must survive its own redacted rendering
//! (what `kaudit config check` prints) without panicking.
#![no_main]

use kaudit::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml("fuzz.yaml", text) {
        Ok(cfg) => {
            let _ = cfg.to_redacted_yaml();
            let _ = cfg.router_setup();
        }
        Err(ConfigError::Key { file, key, .. }) => {
            assert_eq!(file, "fuzz.yaml");
            assert!(!key.is_empty(), "an error without its key path");
        }
        Err(ConfigError::Source { file, .. }) => assert_eq!(file, "fuzz.yaml"),
    }
});
