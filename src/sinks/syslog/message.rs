//! One alert as an RFC 5424 message, and the octet-counted framing of RFC 6587/5425.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID uuid="" rule="" priority=""
//! source="" namespace=""] MSG`, where PRI is facility × 8 + severity (Falco's eight priorities
//! are syslog's eight severities), TIMESTAMP the alert's time in UTC with microseconds (RFC 5424
//! allows six fractional digits), PROCID `-`, MSGID `falco`, and MSG the alert JSON or its
//! `output` line.

use crate::alert::{Alert, Priority};

/// MSGID of every message.
pub const MSGID: &str = "falco";

/// The syslog severity of a Falco priority (same names, same order).
pub fn severity(p: Priority) -> u8 {
    match p {
        Priority::Emergency => 0,
        Priority::Alert => 1,
        Priority::Critical => 2,
        Priority::Error => 3,
        Priority::Warning => 4,
        Priority::Notice => 5,
        Priority::Informational => 6,
        Priority::Debug => 7,
    }
}

/// A header field: printable ASCII without spaces, at most `max` characters, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped.
fn param_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What every message shares: facility, names, format.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Facility code (0..=23).
    pub facility: u8,
    /// APP-NAME.
    pub app_name: String,
    /// HOSTNAME; the alert's own when `None`.
    pub hostname: Option<String>,
    /// SD-ID of the element with the alert's identity.
    pub sd_id: String,
    /// MSG is the output line instead of the alert JSON.
    pub text: bool,
}

impl Shape {
    /// The RFC 5424 message of `a`.
    pub fn message(&self, a: &Alert) -> String {
        let pri = u16::from(self.facility) * 8 + u16::from(severity(a.priority));
        let ts = a.time.format("%Y-%m-%dT%H:%M:%S%.6fZ");
        let host = header_field(self.hostname.as_deref().unwrap_or(&a.hostname), 255);
        let mut sd = format!(
            "[{} uuid=\"{}\" rule=\"{}\" priority=\"{}\" source=\"{}\"",
            self.sd_id,
            a.uuid,
            param_value(&a.rule),
            a.priority.as_str(),
            param_value(&a.source)
        );
        if let Some(ns) = a.field_text("ka.target.namespace") {
            sd.push_str(&format!(" namespace=\"{}\"", param_value(&ns)));
        }
        sd.push(']');
        let msg = if self.text {
            a.output.clone()
        } else {
            a.to_json()
        };
        format!(
            "<{pri}>1 {ts} {host} {} - {MSGID} {sd} {msg}",
            header_field(&self.app_name, 48)
        )
    }
}

/// Octet-counted framing: `LEN SP MSG`.
pub fn frame(msg: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rfc5424_message_and_framing() {
        let a = Alert {
            uuid: uuid::Uuid::nil(),
            time: chrono::Utc
                .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
                .unwrap()
                .with_nanosecond(123_456_789)
                .unwrap(),
            rule: "Say \"hi\" [x]".into(),
            priority: Priority::Warning,
            source: "k8s_audit".into(),
            hostname: "my host".into(),
            output: "out".into(),
            output_fields: serde_json::from_str(r#"{"ka.target.namespace":"team-a"}"#).unwrap(),
            tags: vec![],
        };
        let s = Shape {
            facility: 16,
            app_name: "kaudit".into(),
            hostname: None,
            sd_id: "kaudit@32473".into(),
            text: true,
        };
        assert_eq!(
            s.message(&a),
            "<132>1 2026-01-02T03:04:05.123456Z my_host kaudit - falco [kaudit@32473 \
             uuid=\"00000000-0000-0000-0000-000000000000\" rule=\"Say \\\"hi\\\" [x\\]\" \
             priority=\"Warning\" source=\"k8s_audit\" namespace=\"team-a\"] out"
        );
        let mut out = Vec::new();
        frame("héllo", &mut out);
        assert_eq!(out, "6 héllo".as_bytes());
    }

    use chrono::Timelike;
}
