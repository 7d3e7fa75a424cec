//! `nats`: publishes each alert as its Falco JSON on a subject made from a template, over one
//! long-lived connection that reconnects by itself.
//!
//! Delivery is confirmed, never assumed: with core NATS a batch counts as sent once a flush (a
//! PING/PONG round trip after the messages) returned within the timeout; with `jetstream: true`
//! once the server acknowledged each message as stored. Every message carries the header
//! `Nats-Msg-Id: <alert uuid>`, so JetStream drops the duplicates that retries can make.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{ConnectOptions, HeaderMap};
use serde::{Deserialize, Serialize};

use super::template::Template;
use super::util::SecretSetting;
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::invalid::{Invalid, existing_file, positive};
use crate::secret::Secret;
use crate::sinks::SinkRules;
use crate::sinks::registry::SinkType;
use crate::transport::ClientTls;
use crate::transport::egress::{EgressPolicy, ResolveError};
use futures_util::future::BoxFuture;

/// Settings of a `nats` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`); several for a cluster.
    #[serde(default = "default_servers")]
    pub servers: Vec<String>,
    /// Subject template (see `sinks::template`): `{priority}`, `{rule}`, `{source}`,
    /// `{hostname}`, `{uuid}`, `{field:NAME}`; default `falco.{priority}.{rule}` as falcosidekick.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Publish to JetStream and wait for the server's ack (a stream must cover the subjects).
    #[serde(default)]
    pub jetstream: bool,
    /// How long to wait for a flush or for JetStream acks, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most alerts published per confirmed batch.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Name of the connection, shown by the server.
    #[serde(default = "default_client_name")]
    pub client_name: String,
    /// User name for user/password authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// Password (prefer `password_file`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Token authentication (prefer `token_file`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// NKey seed (`SU...`) for NKey authentication (prefer `nkey_seed_file`).
    #[serde(default)]
    pub nkey_seed: Option<Secret>,
    /// File holding the NKey seed.
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and NKey seed) for decentralized authentication.
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// TLS: CA bundle and client certificate; when set, TLS is required.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_servers() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}
fn default_subject() -> String {
    "falco.{priority}.{rule}".into()
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_batch_max() -> usize {
    256
}
fn default_client_name() -> String {
    "kaudit".into()
}

impl NatsConfig {
    /// Checks the template, the servers and that exactly one way to authenticate is chosen.
    pub fn validate(&self) -> Result<(), Invalid> {
        Template::parse(&self.subject).map_err(|e| Invalid::new("subject", e))?;
        if self.servers.is_empty() {
            return Err(Invalid::new("servers", "must list at least one URL"));
        }
        for (i, s) in self.servers.iter().enumerate() {
            s.parse::<async_nats::ServerAddr>().map_err(|e| {
                Invalid::new(
                    format!("servers[{i}]"),
                    format!("{:?}: {e}", crate::secret::redact_text(s)),
                )
            })?;
        }
        positive("timeout_ms", self.timeout_ms)?;
        positive("batch_max", self.batch_max as u64)?;
        let [password, token, nkey_seed] = self.secrets();
        let methods = [
            self.user.is_some(),
            token.is_set(),
            nkey_seed.is_set(),
            self.creds_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(Invalid::new(
                "",
                "choose one authentication: user/password, token, nkey_seed or creds_file",
            ));
        }
        if password.is_set() && self.user.is_none() {
            return Err(Invalid::new("password", "needs `user`"));
        }
        for s in [password, token, nkey_seed] {
            s.check()?;
        }
        if let Some(p) = &self.creds_file {
            existing_file("creds_file", p)?;
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }

    /// The secret settings: password, token, NKey seed.
    fn secrets(&self) -> [SecretSetting<'_>; 3] {
        [
            SecretSetting::new("password", &self.password, &self.password_file),
            SecretSetting::new("token", &self.token, &self.token_file),
            SecretSetting::new("nkey_seed", &self.nkey_seed, &self.nkey_seed_file),
        ]
    }
}

/// Publishes alerts to NATS core or JetStream.
pub struct NatsSink {
    link: Link,
    subject: Template,
    timeout: Duration,
    batch_max: usize,
}

/// The connection: started at once, or, for a restricted sink, only once the servers passed the
/// egress policy (and checked again every [`RECHECK`]).
enum Link {
    Open(Box<Connected>),
    Gated(Box<Gate>),
}

/// How long a restricted sink trusts its last check of the servers' addresses.
const RECHECK: Duration = Duration::from_secs(10);

type Connected = (async_nats::Client, Option<async_nats::jetstream::Context>);

struct Gate {
    cfg: NatsConfig,
    policy: Arc<EgressPolicy>,
    servers: Vec<(String, u16)>,
    state: tokio::sync::Mutex<(Option<Instant>, Option<Connected>)>,
}

impl Gate {
    /// The connection, after the servers' addresses passed the policy: a refused address
    /// refuses the batch for good (and drops the connection); a name that does not resolve is
    /// worth another try.
    async fn connected(&self, timeout: Duration) -> Result<Connected, SinkError> {
        let mut st = self.state.lock().await;
        if st.0.is_none_or(|t| t.elapsed() > RECHECK) {
            for (host, port) in &self.servers {
                match self.policy.resolve(host, *port).await {
                    Ok(_) => {}
                    Err(ResolveError::Denied(d)) => {
                        if let Some((c, _)) = st.1.take() {
                            let _ = c.drain().await;
                        }
                        st.0 = None;
                        return Err(SinkError::Permanent(format!("nats: {d}")));
                    }
                    Err(e) => return Err(SinkError::retryable(format!("nats: {e}"))),
                }
            }
            st.0 = Some(Instant::now());
        }
        if st.1.is_none() {
            // Servers the cluster announces are not checked: ignore them.
            let opts = options(&self.cfg).await?.ignore_discovered_servers();
            st.1 = Some(start(opts, &self.cfg, timeout).await?);
        }
        st.1.clone()
            .ok_or_else(|| SinkError::retryable("nats: not connected"))
    }
}

/// The connect options of `cfg`: name, reconnects, credentials, TLS (reads the files).
async fn options(cfg: &NatsConfig) -> Result<ConnectOptions, SinkError> {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let mut opts = ConnectOptions::new()
        .name(&cfg.client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(timeout)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100u64 << attempts.min(6)).min(5_000))
        })
        .event_callback(|ev| async move {
            let ev = crate::secret::redact_text(&ev.to_string());
            tracing::info!(event = %ev, "nats connection event");
        });
    let [password, token, nkey_seed] = cfg.secrets();
    if let Some(user) = &cfg.user {
        let pass = password.read()?.unwrap_or_default();
        opts = opts.user_and_password(user.clone(), pass);
    }
    if let Some(token) = token.read()? {
        opts = opts.token(token);
    }
    if let Some(seed) = nkey_seed.read()? {
        opts = opts.nkey(seed);
    }
    if let Some(creds) = &cfg.creds_file {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| SinkError::Permanent(format!("creds_file {}: {e}", creds.display())))?;
    }
    if let Some(tls) = &cfg.tls {
        crate::transport::tls::install_crypto_provider();
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
            opts = opts.add_client_certificate(c.clone(), k.clone());
        }
    }
    Ok(opts)
}

/// Starts the connection (returns at once; the client reconnects in the background).
async fn start(
    opts: ConnectOptions,
    cfg: &NatsConfig,
    timeout: Duration,
) -> Result<Connected, SinkError> {
    let client = opts
        .connect(cfg.servers.as_slice())
        .await
        .map_err(|e| SinkError::Permanent(format!("nats: {e}")))?;
    let js = cfg.jetstream.then(|| {
        async_nats::jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone())
    });
    Ok((client, js))
}

/// `host` and `port` of each server URL.
fn server_addrs(cfg: &NatsConfig) -> Result<Vec<(String, u16)>, SinkError> {
    cfg.servers
        .iter()
        .map(|s| {
            s.parse::<async_nats::ServerAddr>()
                .map(|a| (a.host().to_string(), a.port()))
                .map_err(|e| {
                    SinkError::Permanent(format!(
                        "nats server {}: {e}",
                        crate::secret::redact_text(s)
                    ))
                })
        })
        .collect()
}

impl NatsSink {
    /// Starts the connection. Returns at once: an unreachable server is retried in the
    /// background and publishes fail (retryably) until it is up. A restricted sink
    /// (`transport::access`) connects only once its servers passed the egress policy.
    pub async fn connect(cfg: NatsConfig) -> Result<NatsSink, SinkError> {
        let subject = Template::parse(&cfg.subject).map_err(SinkError::Permanent)?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let servers = server_addrs(&cfg)?;
        let link = match crate::transport::access::current().egress {
            Some(policy) => {
                // The credentials are read now: a bad file is refused at once.
                options(&cfg).await?;
                Link::Gated(Box::new(Gate {
                    cfg: cfg.clone(),
                    policy,
                    servers,
                    state: tokio::sync::Mutex::new((None, None)),
                }))
            }
            None => Link::Open(Box::new(start(options(&cfg).await?, &cfg, timeout).await?)),
        };
        Ok(NatsSink {
            link,
            subject,
            timeout,
            batch_max: cfg.batch_max,
        })
    }

    /// Everything `connect` checks (the subject, the servers, the credential files), without
    /// connecting: a dry run.
    pub async fn check(cfg: &NatsConfig) -> Result<(), SinkError> {
        Template::parse(&cfg.subject).map_err(SinkError::Permanent)?;
        server_addrs(cfg)?;
        options(cfg).await.map(drop)
    }

    async fn connection(&self) -> Result<Connected, SinkError> {
        match &self.link {
            Link::Open(c) => Ok((**c).clone()),
            Link::Gated(g) => g.connected(self.timeout).await,
        }
    }

    async fn publish_core(
        &self,
        client: &async_nats::Client,
        alerts: &[Alert],
    ) -> Result<(), SinkError> {
        for a in alerts {
            let subject = self.subject.render_slugged(a);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", a.uuid.to_string().as_str());
            client
                .publish_with_headers(subject, headers, a.to_json().into())
                .await
                .map_err(|e| match e.kind() {
                    async_nats::client::PublishErrorKind::MaxPayloadExceeded
                    | async_nats::client::PublishErrorKind::InvalidSubject => {
                        SinkError::Permanent(format!("nats: {e}"))
                    }
                    _ => SinkError::retryable(format!("nats: {e}")),
                })?;
        }
        match tokio::time::timeout(self.timeout, client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::retryable(format!("nats flush: {e}"))),
            Err(_) => Err(SinkError::retryable("nats flush: timed out")),
        }
    }

    async fn publish_js(
        &self,
        js: &async_nats::jetstream::Context,
        alerts: &[Alert],
    ) -> Result<(), SinkError> {
        use async_nats::jetstream::context::PublishErrorKind as K;
        let classify = |e: async_nats::jetstream::context::PublishError| match e.kind() {
            K::MaxPayloadExceeded => SinkError::Permanent(format!("nats jetstream: {e}")),
            _ => SinkError::retryable(format!("nats jetstream: {e}")),
        };
        let mut acks = Vec::with_capacity(alerts.len());
        for a in alerts {
            let subject = self.subject.render_slugged(a);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", a.uuid.to_string().as_str());
            let ack = js
                .publish_with_headers(subject, headers, a.to_json().into())
                .await
                .map_err(classify)?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(classify)?;
        }
        Ok(())
    }
}

impl Sink for NatsSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let (client, js) = self.connection().await?;
            if client.connection_state() != State::Connected {
                return Err(SinkError::retryable("nats: not connected"));
            }
            match &js {
                Some(js) => self.publish_js(js, alerts).await,
                None => self.publish_core(&client, alerts).await,
            }
        })
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.batch_max,
            max_wait: Duration::ZERO,
        }
    }
}

/// The `nats` sink type.
pub struct Nats;

impl SinkType for Nats {
    const NAME: &'static str = "nats";
    type Config = NatsConfig;

    fn validate(config: &NatsConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn validate_restricted(config: &NatsConfig, rules: &SinkRules) -> Result<(), Invalid> {
        for (i, s) in config.servers.iter().enumerate() {
            let key = format!("servers[{i}]");
            let addr = s
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| Invalid::new(key.clone(), e.to_string()))?;
            rules
                .egress
                .check_host(addr.host())
                .map_err(|e| Invalid::new(key, e.to_string()))?;
        }
        Ok(())
    }

    async fn build(config: &NatsConfig) -> Result<Box<dyn Sink>, SinkError> {
        if crate::transport::access::current().dry_run {
            NatsSink::check(config).await?;
            return Ok(Box::new(super::tenancy::DryRun));
        }
        Ok(Box::new(NatsSink::connect(config.clone()).await?))
    }
}
