//! The alert: the one contract between detection, the router, the sinks and our users.
//!
//! Its JSON is Falco's alert JSON (`time`, `rule`, `priority`, `source`, `hostname`, `output`,
//! `output_fields`, `tags`) plus falcosidekick's `uuid`, so consumers of either keep working.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Falco's eight priorities, most severe first (the declaration order is the severity order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// System is unusable.
    Emergency,
    /// Action must be taken immediately.
    Alert,
    /// Critical conditions.
    Critical,
    /// Error conditions.
    Error,
    /// Warning conditions.
    Warning,
    /// Normal but significant condition.
    Notice,
    /// Informational messages (`info` is accepted as an alias).
    Informational,
    /// Debug-level messages: the lowest, and the default minimum.
    #[default]
    Debug,
}

impl Priority {
    /// Every priority, most severe first.
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// Falco's printed name (`Warning`, `Informational`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }

    /// Lower-case name, used in NATS subjects and metric labels (`warning`, `informational`).
    pub fn as_lower(self) -> &'static str {
        match self {
            Priority::Emergency => "emergency",
            Priority::Alert => "alert",
            Priority::Critical => "critical",
            Priority::Error => "error",
            Priority::Warning => "warning",
            Priority::Notice => "notice",
            Priority::Informational => "informational",
            Priority::Debug => "debug",
        }
    }

    /// True when `self` is at least as severe as `min` (the `min_priority` test).
    pub fn at_least(self, min: Priority) -> bool {
        self <= min
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text given for a priority was none of Falco's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown priority {0:?}: expected one of emergency, alert, critical, error, warning, notice, informational (info), debug"
)]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Case-insensitive, `info` as an alias of `informational`, as Falco parses it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let p = match s.trim().to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" | "info" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return Err(UnknownPriority(s.to_string())),
        };
        Ok(p)
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One alert, as Falco writes it in JSON, with the `uuid` falcosidekick users de-duplicate on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Given once when the alert is made; stable across retries and restarts.
    #[serde(default = "Uuid::new_v4")]
    pub uuid: Uuid,
    /// Event time, RFC 3339 UTC with nanoseconds and `Z`.
    #[serde(with = "rfc3339_nanos")]
    pub time: DateTime<Utc>,
    /// Name of the rule that matched.
    pub rule: String,
    /// The rule's priority.
    pub priority: Priority,
    /// Event source, `k8s_audit` for everything kaudit detects itself.
    #[serde(default)]
    pub source: String,
    /// Host that raised the alert.
    #[serde(default)]
    pub hostname: String,
    /// The full text line: `<time>: <Priority> <rendered output>`.
    pub output: String,
    /// Each `%field` of the output format with its value (`null` when missing, arrays for lists).
    #[serde(default)]
    pub output_fields: Map<String, Value>,
    /// The rule's tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Alert {
    /// The alert as one compact JSON line (no trailing newline).
    pub fn to_json(&self) -> String {
        // Serializing plain strings, maps and a timestamp cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The value of a named alert field as text, for subjects, keys and attributes:
    /// `rule`, `priority`, `source`, `hostname`, `uuid`, or any output field by its name.
    pub fn field_text(&self, name: &str) -> Option<String> {
        match name {
            "rule" => Some(self.rule.clone()),
            "priority" => Some(self.priority.as_str().to_string()),
            "source" => Some(self.source.clone()),
            "hostname" => Some(self.hostname.clone()),
            "uuid" => Some(self.uuid.to_string()),
            "tags" => Some(self.tags.join(",")),
            _ => match self.output_fields.get(name)? {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            },
        }
    }
}

/// `id` made time-ordered: its first 48 bits become the milliseconds of `time` since the Unix
/// epoch (clamped to 0 before 1970), laid out as a UUID v8 (RFC 9562's v7 layout with our own
/// low bits). A derived id stays derived (the same event and time give the same id), and ids of
/// alerts raised close in time sort close together, so an index keyed on them (the console's
/// store, a consumer's table) grows at its end instead of at random pages.
pub fn time_ordered(id: Uuid, time: &DateTime<Utc>) -> Uuid {
    let ms = time.timestamp_millis().clamp(0, (1 << 48) - 1) as u64;
    let mut b = *id.as_bytes();
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

/// Falco's time format: RFC 3339, UTC, nanoseconds, `Z`.
pub mod rfc3339_nanos {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the time as `2026-01-02T03:04:05.123456789Z`.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Nanos, true))
    }

    /// Reads any RFC 3339 time and converts it to UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("time {s:?}: {e}")))
    }
}

/// Formats a time the way Falco's alert JSON does.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_sort_by_time_and_stay_derived() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let a = Uuid::from_u128(u128::MAX);
        let b = Uuid::from_u128(0);
        let early = time_ordered(a, &t("2026-01-02T03:04:05.000Z"));
        let late = time_ordered(b, &t("2026-01-02T03:04:05.001Z"));
        assert!(early < late, "{early} sorts before {late}");
        assert_eq!(early, time_ordered(a, &t("2026-01-02T03:04:05.000Z")));
        assert_ne!(early, time_ordered(b, &t("2026-01-02T03:04:05.000Z")));
        assert_eq!(early.get_version_num(), 8);
        assert_eq!(early.get_variant(), uuid::Variant::RFC4122);
        let ms = u64::from_be_bytes([
            0,
            0,
            early.as_bytes()[0],
            early.as_bytes()[1],
            early.as_bytes()[2],
            early.as_bytes()[3],
            early.as_bytes()[4],
            early.as_bytes()[5],
        ]);
        assert_eq!(ms as i64, t("2026-01-02T03:04:05.000Z").timestamp_millis());
        // Before 1970 clamps to zero rather than wrapping.
        let old = time_ordered(a, &t("1960-01-01T00:00:00Z"));
        assert_eq!(&old.as_bytes()[..6], &[0; 6]);
    }

    #[test]
    fn priority_parses_case_insensitively_with_info_alias() {
        assert_eq!("WARNING".parse::<Priority>(), Ok(Priority::Warning));
        assert_eq!("info".parse::<Priority>(), Ok(Priority::Informational));
        assert_eq!(
            "Informational".parse::<Priority>(),
            Ok(Priority::Informational)
        );
        assert!("loud".parse::<Priority>().is_err());
    }

    #[test]
    fn priority_order_is_severity() {
        assert!(Priority::Critical.at_least(Priority::Warning));
        assert!(Priority::Warning.at_least(Priority::Warning));
        assert!(!Priority::Notice.at_least(Priority::Warning));
        assert!(Priority::Debug.at_least(Priority::Debug));
    }

    #[test]
    fn alert_json_round_trips_in_falco_shape() {
        let json = r#"{"hostname":"h","output":"12:00:00.000000000: Warning x","output_fields":{"ka.verb":"create","ka.user.groups":["a","b"],"ka.target.name":null},"priority":"Warning","rule":"R","source":"k8s_audit","tags":["k8s"],"time":"2026-01-02T03:04:05.123456789Z"}"#;
        let a: Alert = serde_json::from_str(json).unwrap();
        assert_eq!(a.priority, Priority::Warning);
        assert_eq!(a.time.timestamp_subsec_nanos(), 123_456_789);
        let back = a.to_json();
        assert!(
            back.contains(r#""time":"2026-01-02T03:04:05.123456789Z""#),
            "{back}"
        );
        assert!(back.contains(r#""priority":"Warning""#));
        assert_eq!(
            a.field_text("ka.user.groups").as_deref(),
            Some(r#"["a","b"]"#)
        );
        assert_eq!(a.field_text("ka.target.name"), None);
    }
}
