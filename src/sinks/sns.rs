//! `sns`: AWS Simple Notification Service, through SNS's Query API (`Action=Publish`) over the
//! shared reqwest client, signed with AWS Signature Version 4 by the few lines below.
//!
//! Why not `aws-sdk-sns`: the SDK plus `aws-config` add well over a hundred crates (smithy
//! runtime, its own HTTP stack, and aws-lc-rs by default) to a 2-core build, for one API call.
//! SigV4 over `ring` (already a dependency) is ~100 lines and is checked against AWS's published
//! signing test vector. The standard credential chain is implemented for the sources that
//! matter in Kubernetes, in the SDK's order: environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the shared credentials file (`AWS_PROFILE`,
//! static keys only), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`: IRSA),
//! container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`/`_RELATIVE_URI`: EKS Pod Identity
//! and ECS), then the EC2 instance metadata service (IMDSv2; off with
//! `AWS_EC2_METADATA_DISABLED=true`). Not covered: SSO and `credential_process` profiles, and
//! `role_arn` chaining inside profiles.
//!
//! Message (falcosidekick's convention): the alert's `output` as the message, with String
//! message attributes `priority`, `rule`, `source`, `tags` (comma-joined, when any),
//! `hostname` (when set), `uuid`, then one per output field (name = field name, characters SNS
//! does not allow replaced by `_`; null and empty values skipped). SNS takes at most 10
//! attributes: the core ones come first, then output fields in the rule's order until 10;
//! the rest are left out (the full alert is in the message with `raw_json: true`). With
//! `raw_json: true` the message is the alert's Falco JSON and carries no attributes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::CONTENT_TYPE;
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{Sink, SinkError};
use crate::secret::{Secret, resolve_secret};
use crate::transport::{self, ClientTls, TransportError};
use futures_util::future::BoxFuture;

/// SNS's limit of message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// Settings of an `sns` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// ARN of the topic, `arn:aws:sns:<region>:<account>:<name>`.
    pub topic_arn: String,
    /// Region; defaults to the one in `topic_arn`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (`http://127.0.0.1:5000` for moto, a VPC endpoint...); default
    /// `https://sns.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Static access key id (with `secret_access_key`); unset = the standard credential chain.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// File holding the access key id.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// Static secret access key (prefer `secret_access_key_file`).
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// File holding the secret access key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Session token of temporary static credentials (optional).
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// File holding the session token.
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
    /// Send the alert's Falco JSON as the message, without attributes (falcosidekick's
    /// `rawjson`).
    #[serde(default)]
    pub raw_json: bool,
    /// Request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate for the endpoint.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// The region part of a topic ARN.
fn arn_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _partition, "sns", region, _account, name]
            if !region.is_empty() && !name.is_empty() =>
        {
            Some(region)
        }
        _ => None,
    }
}

impl SnsConfig {
    /// Checks the ARN, the region, the endpoint and the static credentials.
    pub fn validate(&self) -> Result<(), String> {
        let region = arn_region(&self.topic_arn).ok_or_else(|| {
            format!(
                "`topic_arn` {:?} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)",
                self.topic_arn
            )
        })?;
        if self.region.as_deref().is_some_and(|r| r != region) && self.endpoint.is_none() {
            return Err(format!(
                "`region` differs from the topic's region {region:?}; drop `region`"
            ));
        }
        if let Some(e) = &self.endpoint {
            reqwest::Url::parse(e).map_err(|err| format!("`endpoint` {e:?}: {err}"))?;
        }
        if self.timeout_ms == 0 {
            return Err("`timeout_ms` must be greater than 0".into());
        }
        let id = self.access_key_id.is_some() || self.access_key_id_file.is_some();
        let secret = self.secret_access_key.is_some() || self.secret_access_key_file.is_some();
        if id != secret {
            return Err("set both `access_key_id` and `secret_access_key` (or their `_file` forms), or neither".into());
        }
        let token = self.session_token.is_some() || self.session_token_file.is_some();
        if token && !id {
            return Err("`session_token` needs `access_key_id` and `secret_access_key`".into());
        }
        for (key, inline, file) in [
            (
                "access_key_id",
                self.access_key_id.is_some(),
                &self.access_key_id_file,
            ),
            (
                "secret_access_key",
                self.secret_access_key.is_some(),
                &self.secret_access_key_file,
            ),
            (
                "session_token",
                self.session_token.is_some(),
                &self.session_token_file,
            ),
        ] {
            if inline && file.is_some() {
                return Err(format!("set either `{key}` or `{key}_file`, not both"));
            }
            if let Some(p) = file
                && !p.exists()
            {
                return Err(format!("`{key}_file`: {} does not exist", p.display()));
            }
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls").to_string())?;
        }
        Ok(())
    }
}

/// AWS credentials.
#[derive(Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// When temporary credentials expire.
    pub expires: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.access_key_id)
    }
}

/// AWS's URI encoding: unreserved characters as they are, every other byte as `%XX`.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// What a SigV4 signature covers.
pub struct SignInput<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Canonical (already encoded) path, `/` at least.
    pub path: &'a str,
    /// Canonical query string (sorted, encoded), often empty.
    pub query: &'a str,
    /// Headers to sign, names lower-case (must include `host` and `x-amz-date`).
    pub headers: &'a BTreeMap<String, String>,
    /// Hex SHA-256 of the body.
    pub payload_hash: &'a str,
    /// Region.
    pub region: &'a str,
    /// Service name (`sns`, `sts`).
    pub service: &'a str,
    /// `x-amz-date`, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

/// The `Authorization` header value of AWS Signature Version 4.
pub fn authorization(input: &SignInput<'_>, access_key_id: &str, secret: &str) -> String {
    let canonical_headers: String = input
        .headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = input
        .headers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        input.method, input.path, input.query, input.payload_hash
    );
    let date = input.amz_date.get(..8).unwrap_or_default();
    let scope = format!("{date}/{}/{}/aws4_request", input.region, input.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        input.amz_date,
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, input.region.as_bytes());
    let k_service = hmac_sha256(&k_region, input.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// An SNS-valid attribute name: `[A-Za-z0-9_.-]`, no leading/trailing or doubled `.`, not
/// starting with `AWS.`/`Amazon.`, at most 256 characters.
pub fn attribute_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
            c
        } else {
            '_'
        };
        if c == '.' && (out.is_empty() || out.ends_with('.')) {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    if out.ends_with('.') {
        out.pop();
        out.push('_');
    }
    let lower = out.to_ascii_lowercase();
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        out.insert(0, '_');
    }
    out.chars().take(256).collect()
}

/// The message attributes of an alert, in order, at most [`MAX_ATTRIBUTES`].
pub fn attributes(a: &Alert) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("priority".into(), a.priority.as_str().into()),
        ("rule".into(), a.rule.clone()),
        ("source".into(), a.source.clone()),
    ];
    if !a.tags.is_empty() {
        out.push(("tags".into(), a.tags.join(",")));
    }
    if !a.hostname.is_empty() {
        out.push(("hostname".into(), a.hostname.clone()));
    }
    out.push(("uuid".into(), a.uuid.to_string()));
    out.retain(|(_, v)| !v.is_empty());
    for name in a.output_fields.keys() {
        if out.len() >= MAX_ATTRIBUTES {
            break;
        }
        let Some(v) = a.field_text(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let n = attribute_name(name);
        if n.is_empty() || out.iter().any(|(k, _)| *k == n) {
            continue;
        }
        out.push((n, v));
    }
    out
}

/// The form-encoded `Publish` request body.
pub fn publish_form(topic_arn: &str, a: &Alert, raw_json: bool) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("Action".into(), "Publish".into()),
        ("Version".into(), "2010-03-31".into()),
        ("TopicArn".into(), topic_arn.into()),
    ];
    if raw_json {
        params.push(("Message".into(), a.to_json()));
    } else {
        params.push(("Message".into(), a.output.clone()));
        for (i, (k, v)) in attributes(a).into_iter().enumerate() {
            let p = format!("MessageAttributes.entry.{}", i + 1);
            params.push((format!("{p}.Name"), k));
            params.push((format!("{p}.Value.DataType"), "String".into()));
            params.push((format!("{p}.Value.StringValue"), v));
        }
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The text of the first `<tag>…</tag>` of an XML document (entities of AWS answers decoded).
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Parses the static keys of `profile` from a shared credentials file's text.
pub fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            in_profile = name == profile || name == format!("profile {profile}");
            continue;
        }
        if in_profile && let Some((k, v)) = line.split_once('=') {
            values.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Credentials {
        access_key_id: values.get("aws_access_key_id")?.clone(),
        secret_access_key: values.get("aws_secret_access_key")?.clone(),
        session_token: values.get("aws_session_token").cloned(),
        expires: None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonCredentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

impl From<JsonCredentials> for Credentials {
    fn from(j: JsonCredentials) -> Credentials {
        Credentials {
            access_key_id: j.access_key_id,
            secret_access_key: j.secret_access_key,
            session_token: j.token,
            expires: j
                .expiration
                .and_then(|e| DateTime::parse_from_rfc3339(&e).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Publishes alerts to an SNS topic.
pub struct SnsSink {
    cfg: SnsConfig,
    client: reqwest::Client,
    /// Short-timeout client for the metadata endpoints.
    meta_client: reqwest::Client,
    url: reqwest::Url,
    host: String,
    region: String,
    static_creds: Option<Credentials>,
    cached: tokio::sync::Mutex<Option<(Credentials, Instant)>>,
}

fn secret(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
    key: &str,
) -> Result<Option<String>, SinkError> {
    resolve_secret(inline.as_ref(), file.as_deref(), key)
        .map(|s| s.map(|s| s.expose().trim().to_string()))
        .map_err(|e| SinkError::Permanent(e.to_string()))
}

impl SnsSink {
    /// Builds the client and reads static credentials.
    pub fn new(cfg: SnsConfig) -> Result<SnsSink, SinkError> {
        let perm = SinkError::Permanent;
        let region = match (&cfg.region, arn_region(&cfg.topic_arn)) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r.to_string(),
            (None, None) => return Err(perm(format!("bad topic_arn {:?}", cfg.topic_arn))),
        };
        let endpoint = match &cfg.endpoint {
            Some(e) => e.clone(),
            None if region.starts_with("cn-") => format!("https://sns.{region}.amazonaws.com.cn"),
            None => format!("https://sns.{region}.amazonaws.com"),
        };
        let mut url = reqwest::Url::parse(&endpoint).map_err(|e| perm(format!("endpoint: {e}")))?;
        if url.path().is_empty() {
            url.set_path("/");
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(perm(format!("endpoint {endpoint:?} has no host"))),
        };
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let meta_client = transport::client(Duration::from_secs(2), None)?;
        let static_creds = match (
            secret(&cfg.access_key_id, &cfg.access_key_id_file, "access_key_id")?,
            secret(
                &cfg.secret_access_key,
                &cfg.secret_access_key_file,
                "secret_access_key",
            )?,
        ) {
            (Some(id), Some(key)) => Some(Credentials {
                access_key_id: id,
                secret_access_key: key,
                session_token: secret(
                    &cfg.session_token,
                    &cfg.session_token_file,
                    "session_token",
                )?,
                expires: None,
            }),
            _ => None,
        };
        Ok(SnsSink {
            cfg,
            client,
            meta_client,
            url,
            host,
            region,
            static_creds,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// Credentials: static ones, or the chain's (cached until 5 minutes before they expire).
    async fn credentials(&self) -> Result<Credentials, SinkError> {
        if let Some(c) = &self.static_creds {
            return Ok(c.clone());
        }
        let mut cached = self.cached.lock().await;
        if let Some((c, until)) = &*cached
            && Instant::now() < *until
        {
            return Ok(c.clone());
        }
        let c = self.chain().await?;
        let life = match c.expires {
            Some(t) => (t - Utc::now() - chrono::Duration::minutes(5))
                .to_std()
                .unwrap_or(Duration::from_secs(30))
                .max(Duration::from_secs(30)),
            None => Duration::from_secs(3600),
        };
        *cached = Some((c.clone(), Instant::now() + life));
        Ok(c)
    }

    async fn chain(&self) -> Result<Credentials, SinkError> {
        let fail = |m: String| SinkError::retryable(format!("sns credentials: {m}"));
        // 1. Environment.
        if let (Some(id), Some(key)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials {
                access_key_id: id,
                secret_access_key: key,
                session_token: env("AWS_SESSION_TOKEN"),
                expires: None,
            });
        }
        // 2. Shared credentials file, static keys.
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
        if let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok())
            && let Some(c) = profile_credentials(&text, &profile)
        {
            return Ok(c);
        }
        // 3. Web identity (IRSA).
        if let (Some(token_file), Some(role)) =
            (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"))
        {
            let token = std::fs::read_to_string(&token_file)
                .map_err(|e| fail(format!("AWS_WEB_IDENTITY_TOKEN_FILE {token_file}: {e}")))?;
            let session = env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "kaudit".into());
            let sts = if self.region.starts_with("cn-") {
                format!("https://sts.{}.amazonaws.com.cn/", self.region)
            } else {
                format!("https://sts.{}.amazonaws.com/", self.region)
            };
            let body = format!(
                "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
                uri_encode(&role),
                uri_encode(&session),
                uri_encode(token.trim())
            );
            let resp = self
                .client
                .post(sts)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .map_err(|e| fail(format!("sts: {e}")))?;
            let status = resp.status();
            let xml = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(fail(format!(
                    "sts AssumeRoleWithWebIdentity: HTTP {status}: {}",
                    xml.chars().take(300).collect::<String>()
                )));
            }
            let field = |t: &str| {
                xml_text(&xml, t).ok_or_else(|| fail(format!("sts answer without <{t}>")))
            };
            return Ok(Credentials {
                access_key_id: field("AccessKeyId")?,
                secret_access_key: field("SecretAccessKey")?,
                session_token: Some(field("SessionToken")?),
                expires: xml_text(&xml, "Expiration")
                    .and_then(|e| DateTime::parse_from_rfc3339(&e).ok())
                    .map(|t| t.with_timezone(&Utc)),
            });
        }
        // 4. Container credentials (EKS Pod Identity, ECS).
        let container_url = env("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .map(|p| format!("http://169.254.170.2{p}"))
        });
        if let Some(url) = container_url {
            let mut req = self.meta_client.get(&url);
            let token = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| {
                            fail(format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {f}: {e}"))
                        })?
                        .trim()
                        .to_string(),
                ),
                None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            };
            if let Some(t) = token {
                req = req.header(reqwest::header::AUTHORIZATION, t);
            }
            let j: JsonCredentials = req
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| fail(format!("container credentials {url}: {e}")))?
                .json()
                .await
                .map_err(|e| fail(format!("container credentials {url}: {e}")))?;
            return Ok(j.into());
        }
        // 5. EC2 instance metadata (IMDSv2).
        if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(fail(
                "none found (environment, shared credentials file, web identity, container; IMDS disabled)".into(),
            ));
        }
        let base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| "http://169.254.169.254".into());
        let base = base.trim_end_matches('/');
        let imds = |e: reqwest::Error| {
            fail(format!(
                "none found in the environment, shared credentials file, web identity or container, and IMDS failed: {e}"
            ))
        };
        let token = self
            .meta_client
            .put(format!("{base}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(imds)?
            .text()
            .await
            .map_err(imds)?;
        let path = format!("{base}/latest/meta-data/iam/security-credentials/");
        let role = self
            .meta_client
            .get(&path)
            .header("X-aws-ec2-metadata-token", &token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(imds)?
            .text()
            .await
            .map_err(imds)?;
        let role = role.lines().next().unwrap_or_default().trim().to_string();
        let j: JsonCredentials = self
            .meta_client
            .get(format!("{path}{role}"))
            .header("X-aws-ec2-metadata-token", &token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(imds)?
            .json()
            .await
            .map_err(imds)?;
        Ok(j.into())
    }

    async fn publish(&self, a: &Alert) -> Result<(), SinkError> {
        let creds = self.credentials().await?;
        let body = publish_form(&self.cfg.topic_arn, a, self.cfg.raw_json);
        let amz_date = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_string(), content_type.to_string());
        headers.insert("host".to_string(), self.host.clone());
        headers.insert("x-amz-date".to_string(), amz_date.clone());
        if let Some(t) = &creds.session_token {
            headers.insert("x-amz-security-token".to_string(), t.clone());
        }
        let payload_hash = sha256_hex(body.as_bytes());
        let auth = authorization(
            &SignInput {
                method: "POST",
                path: self.url.path(),
                query: "",
                headers: &headers,
                payload_hash: &payload_hash,
                region: &self.region,
                service: "sns",
                amz_date: &amz_date,
            },
            &creds.access_key_id,
            &creds.secret_access_key,
        );
        let mut req = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, content_type)
            .header("x-amz-date", amz_date)
            .header(reqwest::header::AUTHORIZATION, auth)
            .body(body);
        if let Some(t) = &creds.session_token {
            req = req.header("x-amz-security-token", t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| TransportError::request("sns", e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let xml = resp.text().await.unwrap_or_default();
        let code = xml_text(&xml, "Code").unwrap_or_default();
        let message = xml_text(&xml, "Message").unwrap_or_else(|| xml.chars().take(300).collect());
        let text = format!("sns: HTTP {status} {code}: {message}");
        const PASSING: [&str; 9] = [
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestThrottled",
            "KMSThrottling",
            "ServiceUnavailable",
            "InternalError",
            "InternalFailure",
            "RequestExpired",
        ];
        if code == "ExpiredToken" {
            *self.cached.lock().await = None;
            Err(SinkError::retryable(text))
        } else if status.is_server_error()
            || status.as_u16() == 429
            || PASSING.contains(&code.as_str())
        {
            Err(SinkError::retryable(text))
        } else {
            Err(SinkError::Permanent(text))
        }
    }
}

impl Sink for SnsSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for a in alerts {
                self.publish(a).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite, case `get-vanilla`.
    #[test]
    fn sigv4_matches_the_aws_test_vector() {
        let mut headers = BTreeMap::new();
        headers.insert("host".to_string(), "example.amazonaws.com".to_string());
        headers.insert("x-amz-date".to_string(), "20150830T123600Z".to_string());
        let auth = authorization(
            &SignInput {
                method: "GET",
                path: "/",
                query: "",
                headers: &headers,
                payload_hash: &sha256_hex(b""),
                region: "us-east-1",
                service: "service",
                amz_date: "20150830T123600Z",
            },
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn attribute_names_are_sns_safe() {
        assert_eq!(attribute_name("ka.target.name"), "ka.target.name");
        assert_eq!(attribute_name("jevt.value[/x]"), "jevt.value__x_");
        assert_eq!(attribute_name(".a..b."), "_a._b_");
        assert_eq!(attribute_name("AWS.x"), "_AWS.x");
    }

    #[test]
    fn at_most_ten_attributes_core_first() {
        let mut a: Alert = serde_json::from_str(
            r#"{"time":"2026-01-01T00:00:00Z","rule":"R","priority":"Notice","output":"o","source":"k8s_audit","hostname":"h","tags":["a","b"]}"#,
        )
        .unwrap();
        for i in 0..12 {
            a.output_fields.insert(
                format!("f{i:02}"),
                serde_json::Value::String(format!("v{i}")),
            );
        }
        a.output_fields
            .insert("f00".into(), serde_json::Value::Null);
        let attrs = attributes(&a);
        assert_eq!(attrs.len(), MAX_ATTRIBUTES);
        let names: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "priority", "rule", "source", "tags", "hostname", "uuid", "f01", "f02", "f03",
                "f04"
            ]
        );
        assert_eq!(attrs[3].1, "a,b");
    }

    #[test]
    fn profiles_and_arns() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n[other]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n";
        let c = profile_credentials(text, "other").unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("C", Some("E"))
        );
        assert!(profile_credentials(text, "missing").is_none());
        assert_eq!(
            arn_region("arn:aws:sns:eu-west-1:123456789012:falco"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("arn:aws:sqs:eu-west-1:1:q"), None);
    }
}
