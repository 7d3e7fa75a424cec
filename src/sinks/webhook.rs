//! What the chat and on-call sinks share: a URL that is itself a credential (Slack, Teams,
//! Google Chat and Discord webhook URLs carry their token), given inline or as a `_file` and never
//! printed; the settings every one of them has ([`Common`]); and [`JsonSink`], which POSTs one
//! JSON body per alert over the shared client and classifies the answer with the sink's
//! [`RetryPolicy`].
//!
//! Error messages never carry the URL: request errors are stripped of it, and answers are quoted
//! by status and body only.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::shape::{check_console_url, console_link};
use super::template::AlertTemplate;
use super::util::{SecretSetting, parse_url};
use crate::alert::Alert;
use crate::delivery::sink::one_by_one;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::transport::{self, ClientTls, RetryPolicy, TransportError};

/// Checks a URL setting that may be a secret: set (one form only), its file there, and an inline
/// value an http(s) URL.
pub fn check_url(s: &SecretSetting<'_>, inline: &Option<Secret>) -> Result<(), Invalid> {
    s.check()?;
    let key = s.key();
    if !s.is_set() {
        return Err(Invalid::new(
            key,
            format!("set `{key}` or `{key}_file` (a mounted Secret)"),
        ));
    }
    if let Some(v) = inline {
        check_http_url(key, v.expose())?;
    }
    Ok(())
}

/// An absolute `http://` or `https://` URL; the message shows only its scheme and host.
fn check_http_url(key: &str, v: &str) -> Result<reqwest::Url, Invalid> {
    let url =
        reqwest::Url::parse(v.trim()).map_err(|e| Invalid::new(key, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Invalid::new(
            key,
            format!("use an http:// or https:// URL, not {}:", url.scheme()),
        ));
    }
    Ok(url)
}

/// Reads a URL setting (inline or from its file) when the sink is built.
pub fn read_url(s: &SecretSetting<'_>) -> Result<reqwest::Url, SinkError> {
    let key = s.key();
    let v = s
        .read()?
        .ok_or_else(|| SinkError::Permanent(format!("`{key}` is not set")))?;
    check_http_url(key, &v).map_err(|e| SinkError::Permanent(e.to_string()))
}

/// Settings every chat and on-call sink has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// The main text of the message (see docs/templates.md); unset = the sink's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<AlertTemplate>,
    /// Base URL of kaudit's console: messages link to the alert's page there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// Request timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate (a proxy or a self-hosted server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
}

impl Common {
    /// Checks the console URL, the timeout and the TLS files.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_console_url("console_url", &self.console_url)?;
        positive("timeout_ms", self.timeout_ms)?;
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }

    /// The alert's console page, when a console is configured.
    pub fn link(&self, a: &Alert) -> Option<String> {
        self.console_url.as_deref().map(|b| console_link(b, a))
    }

    /// The main text: the template's, or `default()`.
    pub fn text(&self, a: &Alert, default: impl FnOnce() -> String) -> String {
        match &self.template {
            Some(t) => t.render_or(a, self.link(a).as_deref(), default),
            None => default(),
        }
    }

    /// The shared HTTP client with these settings.
    pub fn client(&self) -> Result<reqwest::Client, SinkError> {
        Ok(transport::client(
            Duration::from_millis(self.timeout_ms),
            self.tls.as_ref(),
        )?)
    }
}

impl Common {
    /// The keys of a sink entry that belong to [`Common`].
    pub const KEYS: [&'static str; 4] = ["template", "console_url", "timeout_ms", "tls"];
}

/// A sink's settings: the [`Common`] ones and its own (`T`), written side by side in one
/// entry. Each part refuses keys it does not know, and errors name the key.
#[derive(Clone, Debug, PartialEq)]
pub struct WithCommon<T> {
    /// The settings every chat and on-call sink has.
    pub common: Common,
    /// The sink's own settings.
    pub own: T,
}

/// Deserializes `v` as `T`, naming the key at fault.
fn part<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("key `{path}`: {}", e.into_inner())
        }
    })
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for WithCommon<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut own = Map::<String, Value>::deserialize(d)?;
        let mut common = Map::new();
        for k in Common::KEYS {
            if let Some(v) = own.remove(k) {
                common.insert(k.to_string(), v);
            }
        }
        Ok(WithCommon {
            common: part(Value::Object(common)).map_err(D::Error::custom)?,
            own: part(Value::Object(own)).map_err(D::Error::custom)?,
        })
    }
}

impl<T: Serialize> Serialize for WithCommon<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = Map::new();
        for part in [
            serde_json::to_value(&self.common),
            serde_json::to_value(&self.own),
        ] {
            if let Ok(Value::Object(m)) = part {
                map.extend(m);
            }
        }
        map.serialize(s)
    }
}

/// Builds the JSON body of one alert (or of a batch, for sinks that batch).
pub type BodyFn = Box<dyn Fn(&[Alert]) -> Result<Value, SinkError> + Send + Sync>;

/// A sink that POSTs a JSON body per alert (or per batch) to one URL.
pub struct JsonSink {
    what: &'static str,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    policy: RetryPolicy,
    body: BodyFn,
    batch: BatchPolicy,
}

impl JsonSink {
    /// A sink called `what` in messages, posting `body(alerts)` to `url` with `client`.
    pub fn new(
        what: &'static str,
        client: reqwest::Client,
        url: reqwest::Url,
        policy: RetryPolicy,
        body: BodyFn,
    ) -> JsonSink {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        JsonSink {
            what,
            client,
            url,
            headers,
            policy,
            body,
            batch: BatchPolicy::default(),
        }
    }

    /// Adds a request header (a sensitive one is never printed by the client).
    pub fn header(mut self, name: reqwest::header::HeaderName, mut value: HeaderValue) -> Self {
        if name == reqwest::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        self.headers.insert(name, value);
        self
    }

    /// Sends batches of up to `policy.max` alerts in one body.
    pub fn batched(mut self, policy: BatchPolicy) -> Self {
        self.batch = policy;
        self
    }

    async fn post(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let body = (self.body)(alerts)?;
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| SinkError::Permanent(format!("{}: {e}", self.what)))?;
        post_json(
            self.what,
            &self.client,
            self.url.clone(),
            &self.headers,
            &self.policy,
            bytes,
        )
        .await?;
        Ok(())
    }
}

/// POSTs `body` to `url` and judges the answer; errors never carry the URL.
pub async fn post_json(
    what: &str,
    client: &reqwest::Client,
    url: reqwest::Url,
    headers: &HeaderMap,
    policy: &RetryPolicy,
    body: Vec<u8>,
) -> Result<reqwest::Response, TransportError> {
    let resp = client
        .post(url)
        .headers(headers.clone())
        .body(body)
        .send()
        .await
        .map_err(|e| TransportError::request(what, e.without_url()))?;
    policy.check(what, resp).await
}

impl Sink for JsonSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.batch.max > 1 {
                self.post(alerts).await
            } else {
                one_by_one(alerts, |a| self.post(std::slice::from_ref(a))).await
            }
        })
    }

    fn batch_policy(&self) -> BatchPolicy {
        self.batch
    }
}

/// Checks the inline form of a setting that must be an http(s) URL but is no secret.
pub fn check_plain_url(key: &str, v: &str) -> Result<(), Invalid> {
    let url = parse_url(key, v)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Invalid::new(key, format!("{v:?}: use http:// or https://")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_urls_are_checked_without_printing_them() {
        let inline = Some(Secret::new("ftp://hooks.example/T000/B000/s3cret"));
        let s = SecretSetting::new("webhook_url", &inline, &None);
        let e = check_url(&s, &inline).unwrap_err();
        assert_eq!(e.key, "webhook_url");
        assert!(!e.message.contains("s3cret"), "{e}");
        let none = SecretSetting::new("webhook_url", &None, &None);
        assert!(
            check_url(&none, &None)
                .unwrap_err()
                .message
                .contains("_file")
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "https://hooks.example/T/B/s3cret\n").unwrap();
        let file = Some(f);
        let from_file = SecretSetting::new("webhook_url", &None, &file);
        assert!(check_url(&from_file, &None).is_ok());
        assert_eq!(read_url(&from_file).unwrap().path(), "/T/B/s3cret");
    }
}
