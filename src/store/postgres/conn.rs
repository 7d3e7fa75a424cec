//! Connections to the store's PostgreSQL server: opened plain or over verified TLS as the URL
//! says, made again when they end, and their errors with every cause.

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::tls::{PgTls, PgTlsStream};
use crate::secret::Secret;
use crate::store::StoreError;

pub(super) fn pg(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| {
        // The client's error alone says "error performing TLS handshake"; its sources say why
        // (an unknown issuer, a refused client certificate).
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            source = s.source();
        }
        StoreError::Postgres { what, message }
    }
}

/// Where the store is: its URL and the TLS used when the URL asks for it.
#[derive(Clone)]
pub(super) struct Server {
    pub(super) url: Secret,
    pub(super) tls: PgTls,
}

pub(super) type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, PgTlsStream<tokio_postgres::Socket>>;

impl Server {
    /// Opens a connection: TLS (verified) with `sslmode=require`, plain otherwise (`prefer`,
    /// libpq's and the URL's default, means plain here: TLS is asked for, not guessed).
    pub(super) async fn open(&self) -> Result<(Client, Connection), tokio_postgres::Error> {
        let mut c: tokio_postgres::Config = self.url.expose().parse()?;
        if matches!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer) {
            c.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        c.connect(self.tls.clone()).await
    }
}

/// Connects and drives the connection on a task of its own.
pub(super) async fn connect(url: &Server) -> Result<Client, StoreError> {
    let (client, conn) = url.open().await.map_err(pg("connecting"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "alert store: PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// A client reconnected when its connection has ended.
pub(super) struct Lazy {
    pub(super) url: Server,
    pub(super) client: Mutex<Option<Arc<Client>>>,
}

impl Lazy {
    pub(super) async fn get(&self) -> Result<Arc<Client>, StoreError> {
        let mut c = self.client.lock().await;
        if let Some(cl) = c.as_ref()
            && !cl.is_closed()
        {
            return Ok(cl.clone());
        }
        let cl = Arc::new(connect(&self.url).await?);
        *c = Some(cl.clone());
        Ok(cl)
    }
}

/// The writer's own connection, made again when it has ended.
pub(super) struct Owned {
    pub(super) url: Server,
    pub(super) client: Option<Client>,
}

impl Owned {
    pub(super) async fn get(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.url).await?);
        }
        self.client.as_mut().ok_or(StoreError::Closed)
    }
}
