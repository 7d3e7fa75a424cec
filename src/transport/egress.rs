//! The egress policy of restricted destinations (tenant sinks): which addresses a connection may
//! reach, decided where the connection is made, after DNS resolution.
//!
//! Every address is matched against a table of networks, each allowing or refusing; the most
//! specific matching network decides (a tie refuses). Built in, always present, are refusals of
//! the places a tenant must never reach from kaudit's network position: loopback, link-local
//! (the cloud metadata servers at 169.254.169.254 and `fd00:ec2::254`), the private and
//! carrier-grade NAT ranges clusters put their pods and Services in, multicast and reserved
//! space, and the apiserver's Service address (`KUBERNETES_SERVICE_HOST`). An admin adds
//! networks with [`EgressConfig`]: `deny` refuses more, `allow` makes exceptions (an `allow` more
//! specific than a built-in refusal overrides it) and, once it lists anything, turns the table
//! into an allow-list: an address no entry matches is refused. IPv4 addresses embedded in IPv6
//! ones (`::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`) are judged as both. Names are checked before
//! they are resolved too: `localhost`, the metadata server's and the apiserver's names.
//!
//! HTTP clients get the policy twice: a DNS resolver that drops refused answers
//! ([`PolicyResolver`]) and a connector layer that checks the address actually connected to
//! before a byte of the request is written ([`PeerCheckLayer`]; URLs with an IP literal skip the
//! resolver). Broker clients that resolve for themselves use [`EgressPolicy::resolve`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

/// What an admin adds to the built-in policy (the `tenancy.egress` key of kaudit's config).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Networks (CIDR, or one address) restricted destinations may reach; once set, nothing
    /// else. An entry more specific than a built-in refusal makes an exception to it.
    pub allow: Vec<String>,
    /// Networks (CIDR, or one address) restricted destinations may never reach.
    pub deny: Vec<String>,
}

impl EgressConfig {
    /// Checks that every entry is a network; keys are relative to the `egress` block.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (list, entries) in [("allow", &self.allow), ("deny", &self.deny)] {
            for (i, e) in entries.iter().enumerate() {
                parse_net(e).map_err(|m| Invalid::new(format!("{list}[{i}]"), m))?;
            }
        }
        Ok(())
    }
}

/// `10.0.0.0/8`, or one address as its own /32 or /128.
fn parse_net(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    IpNet::from_str(t)
        .map(|n| n.trunc())
        .or_else(|_| IpAddr::from_str(t).map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a network (CIDR such as 10.0.0.0/8) or an address"))
}

/// Why a destination was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("egress policy refuses {what}: {why}")]
pub struct EgressDenied {
    /// The name or address refused.
    pub what: String,
    /// The rule that refused it.
    pub why: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Allow,
    Deny,
}

#[derive(Clone, Debug)]
struct Entry {
    net: IpNet,
    action: Action,
    why: String,
}

/// Built-in refusals: (network, why).
const BUILT_IN: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this\" network"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata servers)"),
    ("10.0.0.0/8", "private network (cluster pods and Services)"),
    (
        "172.16.0.0/12",
        "private network (cluster pods and Services)",
    ),
    (
        "192.168.0.0/16",
        "private network (cluster pods and Services)",
    ),
    (
        "100.64.0.0/10",
        "carrier-grade NAT (cluster networks, cloud metadata)",
    ),
    ("192.0.0.0/24", "IETF protocol assignments (cloud metadata)"),
    ("198.18.0.0/15", "benchmarking network"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved and broadcast"),
    ("::/128", "unspecified address"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    (
        "fc00::/7",
        "unique local (cluster networks, cloud metadata)",
    ),
    ("ff00::/8", "multicast"),
];

/// Host names refused before resolution (a trailing `.` ignored; `*.x` any subdomain of `x`,
/// `x.*` `x` under any domain).
const DENIED_NAMES: &[&str] = &[
    "localhost",
    "*.localhost",
    "metadata",
    "metadata.google.internal",
    "instance-data",
    "instance-data.ec2.internal",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.*",
];

/// The compiled policy: built-in refusals plus the admin's networks.
#[derive(Clone, Debug)]
pub struct EgressPolicy {
    entries: Vec<Entry>,
    allow_list: bool,
}

impl PartialEq for EgressPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.allow_list == other.allow_list
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.net == b.net && a.action == b.action)
    }
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy::with_apiserver(&EgressConfig::default(), None)
    }
}

impl EgressPolicy {
    /// The policy of `cfg`, refusing the apiserver's Service address from the environment
    /// (`KUBERNETES_SERVICE_HOST`, set in every pod) as well. Entries that do not parse are
    /// skipped: [`EgressConfig::validate`] refuses them at load.
    pub fn new(cfg: &EgressConfig) -> Self {
        let apiserver = std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .and_then(|h| h.parse().ok());
        EgressPolicy::with_apiserver(cfg, apiserver)
    }

    /// The policy of `cfg` with `apiserver` refused (for tests and callers that know it).
    pub fn with_apiserver(cfg: &EgressConfig, apiserver: Option<IpAddr>) -> Self {
        let mut entries: Vec<Entry> = BUILT_IN
            .iter()
            .filter_map(|(n, why)| {
                Some(Entry {
                    net: parse_net(n).ok()?,
                    action: Action::Deny,
                    why: format!("{n} is {why}"),
                })
            })
            .collect();
        if let Some(ip) = apiserver {
            entries.push(Entry {
                net: IpNet::from(ip),
                action: Action::Deny,
                why: "the apiserver's Service address (KUBERNETES_SERVICE_HOST)".into(),
            });
        }
        for (list, action) in [(&cfg.deny, Action::Deny), (&cfg.allow, Action::Allow)] {
            for e in list {
                if let Ok(net) = parse_net(e) {
                    let verb = if action == Action::Deny {
                        "refused"
                    } else {
                        "allowed"
                    };
                    entries.push(Entry {
                        net,
                        action,
                        why: format!("{net} is {verb} by tenancy.egress"),
                    });
                }
            }
        }
        EgressPolicy {
            entries,
            allow_list: !cfg.allow.is_empty(),
        }
    }

    /// The verdict on one address (without embedded forms).
    fn judge(&self, ip: IpAddr) -> Result<(), String> {
        let best = self
            .entries
            .iter()
            .filter(|e| e.net.contains(&ip))
            .max_by_key(|e| (e.net.prefix_len(), e.action == Action::Deny));
        match best {
            Some(e) if e.action == Action::Allow => Ok(()),
            Some(e) => Err(e.why.clone()),
            None if self.allow_list => Err("not in tenancy.egress.allow".into()),
            None => Ok(()),
        }
    }

    /// Allows or refuses a connection to `ip`; an IPv4 address inside an IPv6 one must pass
    /// as well.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), EgressDenied> {
        let deny = |why: String| EgressDenied {
            what: ip.to_string(),
            why,
        };
        let canonical = ip.to_canonical();
        self.judge(canonical).map_err(deny)?;
        if let IpAddr::V6(v6) = canonical
            && let Some(v4) = embedded_v4(v6)
        {
            self.judge(IpAddr::V4(v4)).map_err(deny)?;
        }
        Ok(())
    }

    /// Refuses the names kaudit never connects restricted destinations to (before resolving),
    /// and an address literal the policy refuses. Needs no network: what a dry run can check.
    pub fn check_host(&self, host: &str) -> Result<(), EgressDenied> {
        let h = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Ok(ip) = h.parse::<IpAddr>() {
            return self.check_ip(ip);
        }
        for n in DENIED_NAMES {
            let hit = if let Some(suffix) = n.strip_prefix("*.") {
                h.ends_with(&format!(".{suffix}"))
            } else if let Some(prefix) = n.strip_suffix(".*") {
                h.starts_with(&format!("{prefix}."))
            } else {
                h == *n
            };
            if hit {
                return Err(EgressDenied {
                    what: host.to_string(),
                    why: format!("{n} names a local, metadata or apiserver endpoint"),
                });
            }
        }
        Ok(())
    }

    /// Resolves `host:port` and keeps the addresses the policy allows; refused when none is
    /// left. For clients that connect by themselves (brokers).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        self.check_host(host)?;
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError::Dns(format!("{host}: {e}")))?;
        self.keep_allowed(host, addrs).map_err(ResolveError::Denied)
    }

    fn keep_allowed(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, EgressDenied> {
        let mut ok = Vec::new();
        let mut refused = None;
        for a in addrs {
            match self.check_ip(a.ip()) {
                Ok(()) => ok.push(a),
                Err(d) => {
                    refused.get_or_insert(d);
                }
            }
        }
        if ok.is_empty() {
            return Err(refused.map_or_else(
                || EgressDenied {
                    what: host.to_string(),
                    why: "it resolves to no address".into(),
                },
                |d| EgressDenied {
                    what: format!("{host} ({})", d.what),
                    why: d.why,
                },
            ));
        }
        Ok(ok)
    }
}

/// The IPv4 address inside an IPv4-compatible (`::a.b.c.d`) or NAT64 (`64:ff9b::/96`) address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0);
    let compat = s[..6].iter().all(|x| *x == 0) && !tail.is_unspecified();
    (nat64 || compat).then_some(tail)
}

/// Why [`EgressPolicy::resolve`] returned nothing.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The policy refused every address (or the name).
    #[error(transparent)]
    Denied(#[from] EgressDenied),
    /// The name did not resolve.
    #[error("dns: {0}")]
    Dns(String),
}

/// The header names a restricted destination may not set: they steer where a request goes or
/// how it is framed (`Host`, `Connection`, `Transfer-Encoding`, proxies), or are what metadata
/// servers require to answer.
pub fn forbidden_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "host"
            | "connection"
            | "content-length"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "keep-alive"
            | "expect"
            | "forwarded"
            | "metadata"
            | "metadata-flavor"
            | "x-google-metadata-request"
    ) || n.starts_with("proxy-")
        || n.starts_with("x-forwarded-")
        || n.starts_with("x-aws-ec2-metadata")
}

/// A DNS resolver that hands reqwest only the addresses the policy allows.
#[derive(Clone, Debug)]
pub struct PolicyResolver(pub Arc<EgressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = policy.resolve(&host, 0).await.map_err(
                |e| -> Box<dyn std::error::Error + Send + Sync> {
                    match e {
                        ResolveError::Denied(d) => Box::new(d),
                        ResolveError::Dns(m) => m.into(),
                    }
                },
            )?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector layer that checks the peer address of every new connection against the policy,
/// before the request is written; a connection whose peer it cannot learn is refused.
#[derive(Clone, Debug)]
pub struct PeerCheckLayer(pub Arc<EgressPolicy>);

impl<S> tower::Layer<S> for PeerCheckLayer {
    type Service = PeerCheck<S>;

    fn layer(&self, inner: S) -> PeerCheck<S> {
        PeerCheck {
            inner,
            policy: self.0.clone(),
        }
    }
}

/// The service of [`PeerCheckLayer`].
#[derive(Clone, Debug)]
pub struct PeerCheck<S> {
    inner: S,
    policy: Arc<EgressPolicy>,
}

impl<S, R> tower::Service<R> for PeerCheck<S>
where
    S: tower::Service<R, Error = BoxError>,
    S::Response: hyper_util::client::legacy::connect::Connection + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let connecting = self.inner.call(req);
        let policy = self.policy.clone();
        Box::pin(async move {
            use hyper_util::client::legacy::connect::Connection;
            let conn = connecting.await?;
            let mut extras = http::Extensions::new();
            Connection::connected(&conn).get_extras(&mut extras);
            let peer = extras
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                .map(|i| i.remote_addr());
            match peer {
                Some(addr) => policy
                    .check_ip(addr.ip())
                    .map_err(|d| Box::new(d) as BoxError)?,
                None => {
                    let unknown = EgressDenied {
                        what: "a connection".into(),
                        why: "its peer address is unknown".into(),
                    };
                    return Err(Box::new(unknown) as BoxError);
                }
            }
            Ok(conn)
        })
    }
}

/// The egress refusal somewhere in `e`'s chain of sources, if any.
pub fn denial_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressDenied> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<EgressDenied>() {
            return Some(d);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> EgressPolicy {
        let cfg = EgressConfig {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        };
        cfg.validate().unwrap();
        EgressPolicy::with_apiserver(&cfg, Some("10.96.0.1".parse().unwrap()))
    }

    fn ok(p: &EgressPolicy, ip: &str) -> bool {
        p.check_ip(ip.parse().unwrap()).is_ok()
    }

    #[test]
    fn built_in_refusals_and_their_disguises() {
        let p = policy(&[], &[]);
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.96.0.1",
            "192.168.1.1",
            "100.100.100.200",
            "192.0.0.192",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!ok(&p, ip), "{ip} was allowed");
        }
        for ip in ["203.0.113.7", "8.8.8.8", "2001:4860:4860::8888"] {
            assert!(ok(&p, ip), "{ip} was refused");
        }
        let e = p.check_ip("169.254.169.254".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("metadata"), "{e}");
    }

    #[test]
    fn most_specific_entry_decides_and_an_allow_list_closes_the_rest() {
        // An exception for one in-cluster receiver; the rest of 10/8 stays refused.
        let p = policy(&["10.20.30.40/32"], &[]);
        assert!(ok(&p, "10.20.30.40"));
        assert!(!ok(&p, "10.20.30.41"));
        // An allow-list: nothing else.
        assert!(!ok(&p, "203.0.113.7"));
        // A broad allow never opens a more specific built-in refusal.
        let p = policy(&["0.0.0.0/0"], &[]);
        assert!(ok(&p, "203.0.113.7"));
        assert!(!ok(&p, "169.254.169.254"));
        // Admin refusals; a tie of allow and deny refuses.
        let p = policy(&["203.0.113.0/24"], &["203.0.113.0/24", "198.51.100.7"]);
        assert!(!ok(&p, "203.0.113.9"));
        let p = policy(&[], &["198.51.100.7"]);
        assert!(!ok(&p, "198.51.100.7"));
        assert!(ok(&p, "198.51.100.8"));
        let bad = EgressConfig {
            allow: vec!["10.0.0.0/33".into()],
            deny: vec![],
        };
        assert_eq!(bad.validate().unwrap_err().key, "allow[0]");
    }

    #[test]
    fn names_are_refused_before_resolution() {
        let p = policy(&[], &[]);
        for h in [
            "localhost",
            "LOCALHOST.",
            "x.localhost",
            "metadata.google.internal",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "169.254.169.254",
            "[::1]",
        ] {
            assert!(p.check_host(h).is_err(), "{h}");
        }
        assert!(p.check_host("hooks.example.com").is_ok());
        assert!(p.check_host("kubernetes.example.com").is_ok());
        assert!(forbidden_header("Host") && forbidden_header("Proxy-Authorization"));
        assert!(forbidden_header("Metadata-Flavor") && !forbidden_header("Authorization"));
    }

    /// A restricted client never reaches a refused address, whether the URL names it, a name
    /// resolves to it, or a proxy from the environment would carry it; an allowed one works.
    #[tokio::test]
    async fn restricted_clients_refuse_where_they_connect() {
        use crate::transport::access::{self, Access};
        use crate::transport::{RetryPolicy, client};
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let restricted = |p: EgressPolicy| Access {
            sink: "t".into(),
            ambient_credentials: false,
            egress: Some(Arc::new(p)),
            dry_run: false,
        };
        let post = |c: reqwest::Client, host: &'static str| async move {
            RetryPolicy::STANDARD
                .send("t", c.post(format!("http://{host}:{port}/")))
                .await
        };
        let timeout = std::time::Duration::from_secs(5);
        let c = access::scope(restricted(policy(&["127.0.0.2/32"], &[])), async {
            client(timeout, None)
        })
        .await
        .unwrap();
        for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
            let e = post(c.clone(), host).await.unwrap_err();
            assert!(
                !e.retry && e.message.contains("egress policy"),
                "{host}: {e}"
            );
        }
        assert!(post(c.clone(), "127.0.0.2").await.is_ok());
        // Unrestricted outside the scope.
        assert!(
            post(client(timeout, None).unwrap(), "127.0.0.1")
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn resolving_keeps_only_allowed_addresses() {
        let p = policy(&[], &[]);
        let e = p.resolve("127.0.0.1", 80).await.unwrap_err();
        assert!(matches!(e, ResolveError::Denied(_)), "{e}");
        let p = policy(&["127.0.0.2/32"], &[]);
        let a = p.resolve("127.0.0.2", 80).await.unwrap();
        assert_eq!(a, vec!["127.0.0.2:80".parse().unwrap()]);
    }
}
