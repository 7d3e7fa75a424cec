//! `kaudit sources check`: for each configured source, whether it can reach its service and
//! read, without consuming anything (no ack, no commit, no position saved).

use std::time::Duration;

use super::{SourceConfig, SourceEnv, build};

/// How long one source's check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// One source's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The source's name.
    pub name: String,
    /// Its type.
    pub type_name: &'static str,
    /// What it found (`Ok`), or why it cannot read (`Err`).
    pub result: Result<String, String>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(m) => write!(f, "ok    {} ({}): {m}", self.name, self.type_name),
            Err(m) => write!(f, "FAIL  {} ({}): {m}", self.name, self.type_name),
        }
    }
}

/// Checks every source, one after the other.
pub async fn check_all(sources: &[SourceConfig], env: &SourceEnv) -> Vec<Verdict> {
    let mut out = Vec::new();
    for cfg in sources {
        let result = match build(cfg, env).await {
            Ok(None) => Ok("served by kaudit itself (POST /k8s-audit)".to_string()),
            Ok(Some(source)) => match tokio::time::timeout(CHECK_TIMEOUT, source.check()).await {
                Ok(Ok(m)) => Ok(m),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            },
            Err(e) => Err(e.to_string()),
        };
        out.push(Verdict {
            name: cfg.name.clone(),
            type_name: cfg.settings.type_name(),
            result,
        });
    }
    out
}
