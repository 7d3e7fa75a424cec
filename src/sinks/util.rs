//! Helpers shared by sink settings: URLs and the checks restricted sinks make of them. A secret
//! given inline or as a file is [`crate::secret::SecretSetting`], re-exported here.

use crate::invalid::Invalid;
pub use crate::secret::SecretSetting;
use crate::sinks::SinkRules;

/// Parses the URL at `key`.
pub fn parse_url(key: &str, value: &str) -> Result<reqwest::Url, Invalid> {
    reqwest::Url::parse(value)
        .map_err(|e| Invalid::new(key, format!("{:?}: {e}", crate::secret::redact_text(value))))
}

/// Parses a broker's `url`: scheme `plain` or `secure` (true for the secure one), no credentials
/// in it (they belong in `username` and `password_file`), and `tls` settings only with the
/// secure scheme.
pub fn broker_url(
    value: &str,
    plain: &str,
    secure: &str,
    tls_set: bool,
) -> Result<(reqwest::Url, bool), Invalid> {
    let url = parse_url("url", value)?;
    let is_secure = match url.scheme() {
        s if s == plain => false,
        s if s == secure => true,
        s => {
            return Err(Invalid::new(
                "url",
                format!("scheme {s:?}: use {plain}:// or {secure}://"),
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Invalid::new(
            "url",
            "put credentials in `username` and `password_file`, not in the URL",
        ));
    }
    if tls_set && !is_secure {
        return Err(Invalid::new(
            "tls",
            format!("needs a URL of scheme {secure}://"),
        ));
    }
    Ok((url, is_secure))
}

/// Refuses the URL at `key` when the egress policy refuses its host by name or address (a
/// restricted sink's check without the network; resolved names are checked where they connect).
pub fn check_url_host(key: &str, value: &str, rules: &SinkRules) -> Result<(), Invalid> {
    let url = parse_url(key, value)?;
    let host = url
        .host_str()
        .ok_or_else(|| Invalid::new(key, "the URL has no host"))?;
    rules
        .egress
        .check_host(host)
        .map_err(|e| Invalid::new(key, e.to_string()))
}

/// A restricted Google sink's check: `endpoint` within the egress policy, and a service-account
/// key of its own (the metadata server is out of its reach).
pub fn check_google_api(
    endpoint: &str,
    credentials_file: Option<&std::path::Path>,
    rules: &SinkRules,
) -> Result<(), Invalid> {
    check_url_host("endpoint", endpoint, rules)?;
    match credentials_file {
        Some(_) => Ok(()),
        None => Err(Invalid::new(
            "credentials_file",
            "a restricted sink needs a service-account key: the metadata server is out of its reach",
        )),
    }
}

/// [`check_url_host`] for `host:port` (brokers), or a URL.
pub fn check_server(key: &str, value: &str, rules: &SinkRules) -> Result<(), Invalid> {
    if value.contains("://") {
        return check_url_host(key, value, rules);
    }
    let host = match value.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => value,
    };
    rules
        .egress
        .check_host(host)
        .map_err(|e| Invalid::new(key, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let (_, tls) = broker_url("amqps://mq:5671/", "amqp", "amqps", true).unwrap();
        assert!(tls);
        assert_eq!(
            broker_url("http://mq", "amqp", "amqps", false)
                .unwrap_err()
                .key,
            "url"
        );
        assert_eq!(
            broker_url("redis://u:p@r:6379", "redis", "rediss", false)
                .unwrap_err()
                .key,
            "url"
        );
        assert_eq!(
            broker_url("redis://r:6379", "redis", "rediss", true)
                .unwrap_err()
                .key,
            "tls"
        );
    }
}
