//! The operator's one error type, with a bounded label for metrics.

use super::render::RenderError;

/// Why a reconciliation (or the operator) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An apiserver call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// JSON conversion failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The system's random source failed (issuing a token).
    #[error("no randomness for a new Falco intake token")]
    Random,
    /// The health server could not start or failed.
    #[error("health server: {0}")]
    Health(#[source] std::io::Error),
    /// The health server stopped.
    #[error("health server stopped")]
    HealthStopped,
    /// Another replica took the lease, or it could not be renewed in time.
    #[error("lost the leader lease")]
    LostLease,
}

impl Error {
    /// What kind of failure this is, as a metric label: one of a fixed set (`apiserver`,
    /// `kube_client`, `render`, `json`, `finalizer`, `random`, `health`, `lease`), never the
    /// message.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            Error::Kube(e) => kube_label(e),
            Error::Render(_) => "render",
            Error::Json(_) => "json",
            Error::Finalizer(e) => match e.as_ref() {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => {
                    inner.metric_label()
                }
                Finalizer::AddFinalizer(e) | Finalizer::RemoveFinalizer(e) => kube_label(e),
                _ => "finalizer",
            },
            Error::Random => "random",
            Error::Health(_) | Error::HealthStopped => "health",
            Error::LostLease => "lease",
        }
    }
}

/// `apiserver` when the apiserver answered with a refusal (conflict, forbidden, invalid, ...),
/// `kube_client` when it could not be reached or its answer not read.
fn kube_label(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(_) => "apiserver",
        _ => "kube_client",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_name_the_kind() {
        let cases = [
            (Error::Random, "random"),
            (Error::LostLease, "lease"),
            (Error::HealthStopped, "health"),
            (Error::Render(RenderError::Incomplete("x".into())), "render"),
            (
                Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(
                    Error::Random,
                ))),
                "random",
            ),
            (
                Error::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject)),
                "finalizer",
            ),
        ];
        for (e, label) in cases {
            assert_eq!(e.metric_label(), label, "{e}");
        }
    }
}
