//! IBM Event Streams: its service credentials, as IBM Cloud hands them out, give the brokers and
//! the SASL_SSL/PLAIN login.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// IBM Event Streams: where its service credentials are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventStreams {
    /// The service-credentials JSON as IBM Cloud gives it (e.g. the `binding` key of the Secret
    /// made by a service binding, mounted as a file).
    pub credentials_file: PathBuf,
}

/// The fields of Event Streams service credentials that we use (others are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct EventStreamsCredentials {
    /// Bootstrap brokers, `host:9093`.
    pub kafka_brokers_sasl: Vec<String>,
    /// SASL user (`token`).
    #[serde(default)]
    pub user: Option<String>,
    /// SASL password (the API key).
    #[serde(default)]
    pub password: Option<String>,
    /// The API key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The API key again, as newer credentials spell it.
    #[serde(default)]
    pub apikey: Option<String>,
}

/// Event Streams credentials that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EventStreamsError {
    /// Not JSON, or not the shape of service credentials.
    #[error("not Event Streams service credentials: {0}")]
    NotCredentials(#[from] serde_json::Error),
    /// No broker listed.
    #[error("`kafka_brokers_sasl` is empty")]
    NoBrokers,
    /// No password or API key.
    #[error("neither `password` nor `api_key` is set")]
    NoPassword,
}

/// SASL_SSL/PLAIN settings from Event Streams credentials: `(brokers, user, password)`.
pub fn event_streams_settings(json: &str) -> Result<(String, String, String), EventStreamsError> {
    let c: EventStreamsCredentials = serde_json::from_str(json)?;
    if c.kafka_brokers_sasl.is_empty() {
        return Err(EventStreamsError::NoBrokers);
    }
    let password = c
        .password
        .or(c.api_key)
        .or(c.apikey)
        .filter(|p| !p.is_empty())
        .ok_or(EventStreamsError::NoPassword)?;
    let user = c
        .user
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "token".into());
    Ok((c.kafka_brokers_sasl.join(","), user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_credentials_map_to_sasl_plain() {
        // The shape of IBM Cloud service credentials (values made up).
        let full = r#"{
            "api_key": "AbC-123",
            "apikey": "AbC-123",
            "iam_apikey_description": "Auto-generated",
            "iam_apikey_name": "kaudit",
            "iam_role_crn": "crn:v1:bluemix:public:iam::::serviceRole:Writer",
            "iam_serviceid_crn": "crn:v1:bluemix:public:iam-identity::a/1::serviceid:ServiceId-1",
            "instance_id": "0000-1111",
            "kafka_admin_url": "https://es.example.cloud",
            "kafka_brokers_sasl": ["broker-0.es.example.cloud:9093", "broker-1.es.example.cloud:9093"],
            "kafka_http_url": "https://es.example.cloud",
            "password": "AbC-123",
            "user": "token"
        }"#;
        assert_eq!(
            event_streams_settings(full).unwrap(),
            (
                "broker-0.es.example.cloud:9093,broker-1.es.example.cloud:9093".to_string(),
                "token".to_string(),
                "AbC-123".to_string()
            )
        );
        // Only an API key: user `token`, the key as password.
        let key_only = r#"{"kafka_brokers_sasl": ["b:9093"], "api_key": "K"}"#;
        assert_eq!(
            event_streams_settings(key_only).unwrap(),
            ("b:9093".to_string(), "token".to_string(), "K".to_string())
        );
        let apikey = r#"{"kafka_brokers_sasl": ["b:9093"], "apikey": "K2"}"#;
        assert_eq!(event_streams_settings(apikey).unwrap().2, "K2");
        assert!(event_streams_settings(r#"{"kafka_brokers_sasl": ["b:9093"]}"#).is_err());
        assert!(event_streams_settings(r#"{"kafka_brokers_sasl": [], "api_key": "K"}"#).is_err());
        assert!(event_streams_settings("not json").is_err());
    }
}
