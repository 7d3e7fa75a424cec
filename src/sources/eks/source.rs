//! The polling loop of the `eks` source.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use futures_util::future::BoxFuture;

use super::EksConfig;
use super::cursor::Cursor;
use crate::aws::error_text;
use crate::delivery::Backoff;
use crate::sources::{Skip, Source, SourceContext, SourceError, Stopped};

/// CloudWatch's mark on a message it cut to its size limit.
pub const TRUNCATED: &str = "[Truncated...]";

/// Reads one cluster's audit streams.
pub struct EksSource {
    cfg: EksConfig,
    client: Client,
    group: String,
}

impl EksSource {
    /// Loads the shared AWS config (the credential chain resolves on the first call).
    pub async fn new(cfg: EksConfig) -> Result<EksSource, SourceError> {
        let sdk = crate::aws::load(&cfg.aws_options()?)
            .await
            .map_err(|e| SourceError::Config(e.to_string()))?;
        Ok(EksSource {
            client: Client::new(&sdk),
            group: cfg.log_group(),
            cfg,
        })
    }

    async fn read(self, mut ctx: SourceContext) -> Result<(), Stopped> {
        let path = ctx.state_file("cursor.json");
        let mut cursor = Cursor::load(&path).unwrap_or_else(|| {
            Cursor::starting_at(
                chrono::Utc::now().timestamp_millis() - self.cfg.start_lookback_ms as i64,
            )
        });
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        let mut backoff = Backoff::new(poll, Duration::from_secs(60).max(poll));
        loop {
            match self.poll(&mut ctx, &mut cursor, &path).await {
                Ok(Ok(())) => {
                    ctx.stats.ok();
                    backoff.reset();
                    ctx.sleep(poll).await?;
                }
                Ok(Err(e)) => {
                    ctx.stats.error(&e);
                    let wait = backoff.next_delay();
                    tracing::warn!(source = ctx.name(), group = %self.group, error = %e, retry_in_ms = wait.as_millis() as u64, "FilterLogEvents failed");
                    ctx.sleep(wait).await?;
                }
                Err(Stopped) => return Err(Stopped),
            }
        }
    }

    /// One poll: every page from the cursor's start; each page appended, then the cursor
    /// advanced and saved. The outer error is a stop, the inner one a failed call.
    async fn poll(
        &self,
        ctx: &mut SourceContext,
        cursor: &mut Cursor,
        path: &std::path::Path,
    ) -> Result<Result<(), String>, Stopped> {
        let start = cursor.start();
        let mut token: Option<String> = None;
        loop {
            let req = self
                .client
                .filter_log_events()
                .log_group_name(&self.group)
                .log_stream_name_prefix(&self.cfg.stream_prefix)
                .start_time(start)
                .set_next_token(token.take());
            let page = match ctx.or_stop(req.send()).await? {
                Ok(p) => p,
                Err(e) => return Ok(Err(error_text(&e))),
            };
            let mut batch = ctx.batch();
            let mut handed = Vec::new();
            for ev in page.events() {
                let (Some(stream), Some(ts), Some(id)) =
                    (ev.log_stream_name(), ev.timestamp(), ev.event_id())
                else {
                    continue;
                };
                // FilterLogEvents applies the prefix; so do we (moto ignores it).
                if !stream.starts_with(&self.cfg.stream_prefix) || !cursor.is_new(stream, ts, id) {
                    continue;
                }
                handed.push((stream.to_string(), ts, id.to_string()));
                let msg = ev.message().unwrap_or_default();
                if msg.trim_end().ends_with(TRUNCATED) {
                    batch.skip(Skip::Truncated);
                    tracing::warn!(
                        source = ctx.name(),
                        stream,
                        event_id = id,
                        "message truncated by CloudWatch; skipped"
                    );
                    continue;
                }
                batch.push_json(msg.as_bytes());
            }
            ctx.append(&mut batch).await?;
            if !handed.is_empty() {
                for (s, ts, id) in &handed {
                    cursor.record(s, *ts, id);
                }
                cursor.settle(self.cfg.lag_ms as i64);
                if let Err(e) = cursor.save(path) {
                    tracing::warn!(source = ctx.name(), path = %path.display(), error = %e, "cannot save the cursor");
                }
                let newest = cursor.newest().unwrap_or(cursor.floor);
                ctx.stats.position(
                    format!(
                        "{} streams, newest {}",
                        cursor.streams.len(),
                        chrono::DateTime::from_timestamp_millis(newest)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    ),
                    newest as f64,
                );
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(Ok(())),
            }
        }
    }
}

impl Source for EksSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.read(ctx).await;
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async move {
            let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
            let page = self
                .client
                .filter_log_events()
                .log_group_name(&self.group)
                .log_stream_name_prefix(&self.cfg.stream_prefix)
                .start_time(hour_ago)
                .limit(10)
                .send()
                .await
                .map_err(|e| SourceError::Service(format!("{}: {}", self.group, error_text(&e))))?;
            Ok(format!(
                "FilterLogEvents on {} ({}*) answered: {} events in the first page of the last hour",
                self.group,
                self.cfg.stream_prefix,
                page.events().len()
            ))
        })
    }
}
