//! Graceful shutdown: no new connections, in-flight requests finish, and the drain is bounded by
//! `drain_timeout`.

use super::*;

/// A route that signals when it starts and finishes only when released.
fn gated_router(started: Arc<Notify>, release: Arc<Notify>) -> Router {
    Router::standard().route(Method::GET, "/slow", move |_req: Req| {
        let started = started.clone();
        let release = release.clone();
        async move {
            started.notify_one();
            release.notified().await;
            ok_text("done")
        }
    })
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_in_flight_requests_finish() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let router = gated_router(started.clone(), release.clone());
    let server = start_with(config(), healthy(), alive(), Some(router)).await;
    let in_flight = tokio::spawn(client().get(server.url("/slow")).send());
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("handler started");

    server.shutdown.cancel();
    // New connections are refused once the listener is closed.
    tokio::time::timeout(BOUND, async {
        loop {
            match TcpStream::connect(server.addr).await {
                Err(_) => break,
                Ok(stream) => {
                    drop(stream);
                    tokio::task::yield_now().await;
                }
            }
        }
    })
    .await
    .expect("listener closed");
    assert!(
        !server.handle.is_finished(),
        "serve waits for the in-flight request"
    );

    release.notify_one();
    let response = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("in-flight request finishes")
        .expect("task")
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("text"), "done");
    server.stop().await;
}

#[tokio::test]
async fn the_drain_is_bounded_by_drain_timeout() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let router = gated_router(started.clone(), release);
    let mut config = config();
    config.request_timeout = Duration::from_secs(60);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ctx = HttpContext {
        health: healthy(),
        liveness: alive(),
        config,
        metrics: temu_sync::metrics::Metrics::new(),
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(serve_with_router(
        listener,
        ctx,
        router,
        shutdown.clone(),
        Duration::from_millis(300),
    ));
    let in_flight = tokio::spawn(client().get(format!("http://{addr}/slow")).send());
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("handler started");

    let cancelled_at = Instant::now();
    shutdown.cancel();
    let result = tokio::time::timeout(BOUND, handle)
        .await
        .expect("serve returns despite a request that never finishes")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    let took = cancelled_at.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    // The abandoned request fails instead of hanging.
    let outcome = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("client sees the close")
        .expect("task");
    assert!(outcome.is_err(), "{outcome:?}");
}
