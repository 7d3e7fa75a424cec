//! Baseline for `scripts/bench-rules`: reads audit event files as `kaudit rules test` does (the
//! whole file as one payload if it is one, else one payload per line) and only parses each
//! payload into a `serde_json::Value`, so the rules engine's cost can be read against it.
//! Prints the number of events parsed (items of EventLists and arrays counted).

use std::process::ExitCode;

fn count(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => a.iter().map(count).sum(),
        serde_json::Value::Object(o) => match o.get("items").and_then(|i| i.as_array()) {
            Some(items) if o.get("kind").and_then(|k| k.as_str()) == Some("EventList") => {
                items.len()
            }
            _ => 1,
        },
        _ => 0,
    }
}

fn main() -> ExitCode {
    let mut events = 0usize;
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("parse-only: {path}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            events += count(&v);
            continue;
        }
        for line in bytes.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(v) => events += count(&v),
                Err(e) => eprintln!("parse-only: {path}: {e}"),
            }
        }
    }
    println!("events: {events}");
    ExitCode::SUCCESS
}
