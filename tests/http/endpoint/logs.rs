//! Request logs: one line per request without headers or query string; probes stay quiet.

use super::*;

/// Collects formatted log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// `#[tokio::test]` runs every task of the server on this thread, so a thread-local subscriber
// sees the server's events.
#[tokio::test]
async fn each_request_is_logged_without_headers_or_query_and_probes_stay_quiet() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = start(healthy()).await;
    let client = client();
    let response = client
        .get(server.url("/nope?access_token=query-secret"))
        .header("authorization", "Bearer header-secret")
        .send()
        .await
        .expect("request");
    let request_id = header(&response, "x-request-id").to_string();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = get(&client, &server, "/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock()).to_string();
    let line = text
        .lines()
        .find(|l| l.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line for {request_id}: {text}"));
    for field in [
        "method=GET",
        "path=/nope",
        "status=404",
        "duration_ms=",
        "INFO",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(!text.contains("secret"), "{text}");
    assert!(
        !text.contains("path=/health"),
        "probes are logged at debug: {text}"
    );
}
