//! (placeholder with the agreed API; the HTTP module is being written separately)
use std::sync::Arc;
use std::time::Duration;

pub struct HttpContext {
    pub health: crate::health::Health,
    pub liveness:
        Arc<dyn Fn(Duration) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>,
    pub config: crate::config::HttpConfig,
}

pub async fn serve(
    _listener: tokio::net::TcpListener,
    _ctx: HttpContext,
    shutdown: tokio_util::sync::CancellationToken,
    _drain_timeout: Duration,
) -> std::io::Result<()> {
    shutdown.cancelled().await;
    Ok(())
}
