//! The operator's health server: `/healthz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::metrics::Metrics;

/// Serves `/healthz` and `/metrics` on `listen` until it fails.
pub(crate) async fn serve_health(listen: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await
}
