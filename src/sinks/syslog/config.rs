//! The `syslog` sink's settings.

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};
use crate::transport::ClientTls;

/// How messages travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP with octet-counted framing (RFC 6587).
    #[default]
    Tcp,
    /// TLS over TCP with octet-counted framing (RFC 5425).
    Tls,
    /// One message per UDP datagram (RFC 5426): unconfirmed.
    Udp,
}

/// What the MSG part holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MsgFormat {
    /// The alert's Falco JSON.
    #[default]
    Json,
    /// The alert's `output` line.
    Text,
}

/// The facilities of RFC 5424 by name, with their codes.
pub const FACILITIES: [(&str, u8); 22] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("audit", 13),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Settings of a `syslog` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The receiver, `host:port`.
    pub address: String,
    /// `tcp` (default), `tls` or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// The facility name (`local0` by default; `auth`, `authpriv`, `audit`, `local7`...).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// APP-NAME of every message (1 to 48 printable ASCII characters).
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME of every message; default: the alert's `hostname`.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `json` (the alert's Falco JSON, default) or `text` (its `output` line).
    #[serde(default)]
    pub format: MsgFormat,
    /// SD-ID of the structured data element carrying uuid, rule, priority, source and namespace.
    #[serde(default = "default_sd_id")]
    pub structured_data_id: String,
    /// Name the TLS server certificate must carry; default: the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// CA bundle and client certificate (`protocol: tls`).
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Largest datagram with `protocol: udp`; a larger message is refused (dead-lettered).
    #[serde(default = "default_udp_max")]
    pub udp_max_bytes: usize,
    /// Connect and write timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most alerts written per batch.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

fn default_facility() -> String {
    "local0".into()
}
fn default_app_name() -> String {
    "kaudit".into()
}
/// 32473 is the enterprise number IANA keeps for examples (RFC 5612): set your own when you
/// have one.
fn default_sd_id() -> String {
    "kaudit@32473".into()
}
fn default_udp_max() -> usize {
    8192
}
fn default_batch_max() -> usize {
    100
}

/// Printable US-ASCII without space (RFC 5424's PRINTUSASCII).
fn printable(s: &str) -> bool {
    s.bytes().all(|b| (33..=126).contains(&b))
}

impl SyslogConfig {
    /// The facility code.
    pub fn facility_code(&self) -> Option<u8> {
        FACILITIES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&self.facility))
            .map(|(_, c)| *c)
    }

    /// The host part of `address`, brackets of an IPv6 literal removed.
    pub fn host(&self) -> &str {
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Checks the address, names and limits.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self.address.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => {
                return Err(Invalid::new(
                    "address",
                    format!("{:?}: use host:port", self.address),
                ));
            }
        }
        if self.facility_code().is_none() {
            let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
            return Err(Invalid::new(
                "facility",
                format!("{:?}: use one of {}", self.facility, names.join(", ")),
            ));
        }
        if self.app_name.is_empty() || self.app_name.len() > 48 || !printable(&self.app_name) {
            return Err(Invalid::new(
                "app_name",
                "1 to 48 printable ASCII characters, no spaces (RFC 5424 APP-NAME)",
            ));
        }
        if let Some(h) = &self.hostname
            && (h.is_empty() || h.len() > 255 || !printable(h))
        {
            return Err(Invalid::new(
                "hostname",
                "1 to 255 printable ASCII characters, no spaces (RFC 5424 HOSTNAME)",
            ));
        }
        let sd = &self.structured_data_id;
        let sd_ok = !sd.is_empty()
            && sd.len() <= 32
            && printable(sd)
            && !sd.contains(['=', ']', '"'])
            && sd.split_once('@').is_some_and(|(n, num)| {
                !n.is_empty() && !num.is_empty() && num.split('.').all(|d| d.parse::<u32>().is_ok())
            });
        if !sd_ok {
            return Err(Invalid::new(
                "structured_data_id",
                format!(
                    "{sd:?}: use name@<private enterprise number> (at most 32 characters), e.g. kaudit@32473"
                ),
            ));
        }
        if self.protocol != Protocol::Tls && (self.tls.is_some() || self.server_name.is_some()) {
            return Err(Invalid::new(
                "protocol",
                "`tls` and `server_name` need `protocol: tls`",
            ));
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        if !(480..=65_507).contains(&self.udp_max_bytes) {
            return Err(Invalid::new(
                "udp_max_bytes",
                "must be 480..=65507 (RFC 5426; the largest IPv4 datagram)",
            ));
        }
        positive("timeout_ms", self.timeout_ms)?;
        positive("batch_max", self.batch_max as u64)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<SyslogConfig, String> {
        let c: SyslogConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        let c = cfg("address: siem.example.com:6514\nprotocol: tls\n").unwrap();
        assert_eq!(c.host(), "siem.example.com");
        assert_eq!(c.facility_code(), Some(16));
        assert_eq!(cfg("address: '[::1]:514'\n").unwrap().host(), "::1");
        assert!(cfg("address: nohost\n").unwrap_err().contains("address"));
        assert!(
            cfg("address: h:1\nfacility: nope\n")
                .unwrap_err()
                .contains("local7")
        );
        assert!(cfg("address: h:1\napp_name: a b\n").is_err());
        assert!(cfg("address: h:1\nstructured_data_id: kaudit\n").is_err());
        assert!(
            cfg("address: h:1\ntls: {}\n")
                .unwrap_err()
                .contains("protocol")
        );
        assert!(cfg("address: h:1\nudp_max_bytes: 100\n").is_err());
        assert!(cfg("address: h:1\nbogus: 1\n").is_err());
    }
}
