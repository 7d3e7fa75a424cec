//! The operator's one error type.

use super::render::RenderError;

/// A failed reconciliation.
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
    Finalizer(String),
    /// The system's random source failed (issuing a token).
    #[error("no randomness for a new Falco intake token")]
    Random,
}
