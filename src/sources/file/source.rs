//! The reading loop of the `file` source.

use std::io::Read;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::FileConfig;
use crate::follow::{Chunk, Follower, Note, Position, rotated_files};
use crate::sources::{Skip, Source, SourceContext, SourceError, Stopped};

/// Follows one audit log.
pub struct FileSource {
    cfg: FileConfig,
}

impl FileSource {
    /// A source for `cfg`.
    pub fn new(cfg: FileConfig) -> FileSource {
        FileSource { cfg }
    }

    async fn read(self, mut ctx: SourceContext) -> Result<(), Stopped> {
        let checkpoint = ctx.state_file("position");
        let resume = Position::load(&checkpoint);
        let path = self.cfg.path.clone();
        let mut follower = if self.cfg.read_rotated {
            Follower::with_rotated(path, resume, self.cfg.start_at)
        } else {
            Follower::new(path, resume)
        };
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        loop {
            loop {
                let (chunks, notes) = follower.poll(self.cfg.batch_bytes);
                let failed = notes.iter().any(|n| matches!(n, Note::Error(_)));
                for n in notes {
                    self.note(&ctx, n);
                }
                if !failed {
                    ctx.stats.ok();
                }
                if chunks.is_empty() {
                    break;
                }
                for chunk in chunks {
                    self.hand_on(&mut ctx, chunk, &checkpoint).await?;
                }
            }
            ctx.sleep(poll).await?;
        }
    }

    /// Appends a chunk's events, then saves the position after them.
    async fn hand_on(
        &self,
        ctx: &mut SourceContext,
        chunk: Chunk,
        checkpoint: &std::path::Path,
    ) -> Result<(), Stopped> {
        let mut batch = ctx.batch();
        for line in &chunk.lines {
            if line.text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if batch.push_json(&line.text) == 0 {
                tracing::warn!(
                    source = ctx.name(),
                    file = %self.cfg.path.display(),
                    offset = line.offset,
                    "line holds no audit event; skipped"
                );
            }
        }
        ctx.append(&mut batch).await?;
        if let Err(e) = chunk.end.save(checkpoint) {
            ctx.stats.error(format_args!("cannot save position: {e}"));
            tracing::warn!(source = ctx.name(), path = %checkpoint.display(), error = %e, "cannot save position");
        }
        ctx.stats.position(
            format!(
                "inode {} fingerprint {:016x} offset {}",
                chunk.end.ino, chunk.end.fingerprint, chunk.end.offset
            ),
            chunk.end.offset as f64,
        );
        Ok(())
    }

    fn note(&self, ctx: &SourceContext, n: Note) {
        let (source, file) = (ctx.name(), self.cfg.path.display());
        match n {
            Note::Rotated => tracing::info!(source, %file, "audit log rotated; reading on"),
            Note::Truncated => {
                tracing::info!(source, %file, "audit log truncated; reading from the top")
            }
            Note::DroppedPartial(bytes) => {
                ctx.stats.skipped(Skip::PartialLine, 1);
                tracing::warn!(source, %file, bytes, "a rotated audit log ended without a newline; its last line was dropped");
            }
            Note::Error(e) => {
                ctx.stats.error(&e);
                tracing::warn!(source, %file, error = %e, "cannot read the audit log");
            }
        }
    }
}

impl Source for FileSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.read(ctx).await;
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async move {
            let path = &self.cfg.path;
            let mut f = std::fs::File::open(path)
                .map_err(|e| SourceError::Service(format!("{}: {e}", path.display())))?;
            let mut head = [0u8; 1];
            f.read(&mut head)
                .map_err(|e| SourceError::Service(format!("{}: {e}", path.display())))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let rotated = if self.cfg.read_rotated {
                rotated_files(path).len()
            } else {
                0
            };
            Ok(format!(
                "{} is readable ({len} bytes; {rotated} rotated files beside it)",
                path.display()
            ))
        })
    }
}
