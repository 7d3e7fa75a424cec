//! The consume-append-commit loop of the `aks` source.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::AksConfig;
use crate::delivery::Backoff;
use crate::sources::{EventBatch, Skip, Source, SourceContext, SourceError, Stopped};

/// How long a batch waits for more messages once it has one.
const LINGER: Duration = Duration::from_millis(50);

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    records: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(default)]
    category: Option<String>,
    #[serde(default, borrow)]
    properties: Option<Properties<'a>>,
}

#[derive(Deserialize)]
struct Properties<'a> {
    #[serde(default, borrow)]
    log: Option<&'a RawValue>,
}

/// Reads one event hub as one consumer of its group.
pub struct AksSource {
    cfg: AksConfig,
    consumer: Arc<StreamConsumer>,
}

impl AksSource {
    /// Creates the consumer (it connects when it first reads).
    pub fn new(cfg: AksConfig) -> Result<AksSource, SourceError> {
        let consumer: StreamConsumer = cfg
            .client_config()?
            .create()
            .map_err(|e| SourceError::Config(format!("kafka consumer: {e}")))?;
        Ok(AksSource {
            cfg,
            consumer: Arc::new(consumer),
        })
    }

    /// Adds one event body's audit records to the batch.
    fn take(&self, ctx: &SourceContext, batch: &mut EventBatch, payload: &[u8], at: (i32, i64)) {
        let body: Body = match serde_json::from_slice(payload) {
            Ok(b) => b,
            Err(e) => {
                batch.skip(Skip::Malformed);
                tracing::warn!(source = ctx.name(), partition = at.0, offset = at.1, error = %e, "event body is not a diagnostic-settings {{\"records\": [...]}}; skipped");
                return;
            }
        };
        for r in body.records {
            let category = r.category.as_deref().unwrap_or_default();
            if !self.cfg.categories.iter().any(|c| c == category) {
                batch.skip(Skip::OtherCategory);
                continue;
            }
            // `log` is the Event's JSON as a string.
            let Some(log) = r
                .properties
                .and_then(|p| p.log)
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            else {
                batch.skip(Skip::Malformed);
                continue;
            };
            if batch.push_json(log.as_bytes()) == 0 {
                tracing::debug!(
                    source = ctx.name(),
                    partition = at.0,
                    offset = at.1,
                    "record holds no audit event (cut off at 16 KiB?)"
                );
            }
        }
    }

    async fn read(self, mut ctx: SourceContext) -> Result<(), Stopped> {
        if let Err(e) = self.consumer.subscribe(&[&self.cfg.event_hub]) {
            ctx.stats.error(format_args!("subscribe: {e}"));
            tracing::error!(source = ctx.name(), error = %e, "cannot subscribe");
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
        loop {
            // The first message waits as long as it takes; then up to `batch_max` more
            // arriving within the linger.
            let first = ctx.or_stop(self.consumer.recv()).await?;
            let mut msgs = Vec::new();
            match first {
                Ok(m) => msgs.push(m.detach()),
                Err(e) => {
                    ctx.stats.error(&e);
                    let wait = backoff.next_delay();
                    tracing::warn!(source = ctx.name(), error = %e, "kafka consumer error; reading on");
                    ctx.sleep(wait).await?;
                    continue;
                }
            }
            while msgs.len() < self.cfg.batch_max {
                match tokio::time::timeout(LINGER, self.consumer.recv()).await {
                    Ok(Ok(m)) => msgs.push(m.detach()),
                    _ => break,
                }
            }
            ctx.stats.ok();
            backoff.reset();
            let mut batch = ctx.batch();
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            for m in &msgs {
                let at = (m.partition(), m.offset());
                if let Some(p) = m.payload() {
                    self.take(&ctx, &mut batch, p, at);
                }
                let e = next.entry(at.0).or_insert(at.1 + 1);
                *e = (*e).max(at.1 + 1);
            }
            ctx.append(&mut batch).await?;
            // Committed only now: a crash before this reads these messages again.
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &next {
                let _ = tpl.add_partition_offset(&self.cfg.event_hub, *p, Offset::Offset(*o));
            }
            let consumer = self.consumer.clone();
            let res =
                tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
            match res {
                Ok(Ok(())) => {
                    committed.extend(next);
                    let sum: i64 = committed.values().sum();
                    ctx.stats.position(
                        committed
                            .iter()
                            .map(|(p, o)| format!("p{p}@{o}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                        sum as f64,
                    );
                }
                Ok(Err(e)) => {
                    ctx.stats.error(format_args!("commit: {e}"));
                    tracing::warn!(source = ctx.name(), error = %e, "offset commit failed; these messages will be read again (same auditIDs)");
                }
                Err(e) => tracing::error!(source = ctx.name(), error = %e, "commit task failed"),
            }
        }
    }
}

impl Source for AksSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.read(ctx).await;
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async move {
            let cfg = self.cfg.clone();
            let res = tokio::task::spawn_blocking(move || -> Result<String, SourceError> {
                let c: BaseConsumer = cfg
                    .client_config()?
                    .create()
                    .map_err(|e| SourceError::Config(format!("kafka consumer: {e}")))?;
                let md = c
                    .fetch_metadata(Some(&cfg.event_hub), Duration::from_secs(10))
                    .map_err(|e| {
                        SourceError::Service(format!("metadata of {}: {e}", cfg.event_hub))
                    })?;
                let parts = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == cfg.event_hub)
                    .filter(|t| t.error().is_none())
                    .map(|t| t.partitions().len())
                    .ok_or_else(|| {
                        SourceError::Service(format!("event hub {} not found", cfg.event_hub))
                    })?;
                let mut tpl = TopicPartitionList::new();
                for p in 0..parts as i32 {
                    tpl.add_partition(&cfg.event_hub, p);
                }
                let committed = c
                    .committed_offsets(tpl, Duration::from_secs(10))
                    .map_err(|e| {
                        SourceError::Service(format!(
                            "committed offsets of group {}: {e}",
                            cfg.consumer_group
                        ))
                    })?;
                let offsets: Vec<String> = committed
                    .elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => format!("p{}@{o}", e.partition()),
                        _ => format!("p{}@none", e.partition()),
                    })
                    .collect();
                Ok(format!(
                    "event hub {}: {parts} partitions; group {} at {}",
                    cfg.event_hub,
                    cfg.consumer_group,
                    offsets.join(" ")
                ))
            })
            .await;
            res.map_err(|e| SourceError::Service(e.to_string()))?
        })
    }
}
