//! The `elasticsearch` and `opensearch` sinks' settings.

use std::path::PathBuf;

use chrono::format::{Item, StrftimeItems};
use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::sinks::util::{SecretSetting, parse_url};
use crate::transport::ClientTls;

/// Settings of an `elasticsearch` or `opensearch` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL of the cluster (`https://es.example.com:9200`); `_bulk` is appended.
    pub url: String,
    /// Index name, with strftime fields over the alert's time in UTC (`falco-%Y.%m.%d`: one
    /// index a day). A data stream's name works too (documents are written with `create`).
    #[serde(default = "default_index")]
    pub index: String,
    /// Ingest pipeline to run the documents through.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// User for basic authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password of `username` (prefer `password_file`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Elasticsearch API key, the base64 `encoded` form (`Authorization: ApiKey ...`).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// File holding the API key.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Most alerts per `_bulk` request.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Longest time the first alert of a batch waits for others, in milliseconds.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Request timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_index() -> String {
    "falco-%Y.%m.%d".into()
}
fn default_batch_max() -> usize {
    500
}
fn default_batch_wait_ms() -> u64 {
    1000
}

/// Why an index name is not one Elasticsearch accepts, if it is not.
pub fn index_name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 255 {
        return Some("must be 1 to 255 bytes");
    }
    if name != name.to_lowercase() {
        return Some("must be lower case");
    }
    if name.starts_with(['-', '_', '+']) || name == "." || name == ".." {
        return Some("must not start with '-', '_' or '+', nor be '.' or '..'");
    }
    if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        return Some("must not contain \\ / * ? \" < > | space , # :");
    }
    None
}

impl ElasticsearchConfig {
    /// The secret settings: password, API key.
    pub(super) fn secrets(&self) -> [SecretSetting<'_>; 2] {
        [
            SecretSetting::new("password", &self.password, &self.password_file),
            SecretSetting::new("api_key", &self.api_key, &self.api_key_file),
        ]
    }

    /// The index of an alert raised at `t`.
    pub fn index_at(&self, t: &chrono::DateTime<chrono::Utc>) -> String {
        t.format(&self.index).to_string()
    }

    /// Checks the URL, the index pattern, one way to authenticate, and the limits;
    /// `api_keys` is false for OpenSearch, which has none.
    pub fn validate(&self, api_keys: bool) -> Result<(), Invalid> {
        let url = parse_url("url", &self.url)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new("url", "use http:// or https://"));
        }
        if StrftimeItems::new(&self.index).any(|i| matches!(i, Item::Error)) {
            return Err(Invalid::new(
                "index",
                format!("{:?}: not a valid strftime pattern", self.index),
            ));
        }
        let sample = self.index_at(&chrono::Utc::now());
        if let Some(why) = index_name_error(&sample) {
            return Err(Invalid::new(
                "index",
                format!("{:?} makes index {sample:?}, which {why}", self.index),
            ));
        }
        let [password, api_key] = self.secrets();
        password.check()?;
        api_key.check()?;
        if api_key.is_set() && !api_keys {
            return Err(Invalid::new(
                "api_key",
                "OpenSearch has no API keys: use username and password",
            ));
        }
        if api_key.is_set() && self.username.is_some() {
            return Err(Invalid::new(
                "api_key",
                "choose one authentication: username/password or api_key",
            ));
        }
        password.paired_with_username(self.username.as_deref())?;
        positive("batch_max", self.batch_max as u64)?;
        positive("timeout_ms", self.timeout_ms)?;
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cfg(yaml: &str) -> Result<ElasticsearchConfig, String> {
        let c: ElasticsearchConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate(true).map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates_and_names_indices() {
        let c = cfg("url: http://es:9200\n").unwrap();
        let t = chrono::Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(c.index_at(&t), "falco-2026.03.04");
        assert!(
            cfg("url: http://es:9200\nindex: Falco\n")
                .unwrap_err()
                .contains("lower case")
        );
        assert!(cfg("url: http://es:9200\nindex: 'a-%Q'\n").is_err());
        assert!(cfg("url: http://es:9200\nusername: u\n").is_err());
        assert!(cfg("url: http://es:9200\nusername: u\npassword: p\n").is_ok());
        assert!(cfg("url: http://es:9200\nusername: u\npassword: p\napi_key: k\n").is_err());
        assert!(cfg("url: ftp://es\n").is_err());
        let os: ElasticsearchConfig = yaml_serde::from_str("url: http://os\napi_key: k\n").unwrap();
        assert!(
            os.validate(false)
                .unwrap_err()
                .message
                .contains("OpenSearch")
        );
    }
}
