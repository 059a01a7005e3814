//! Loopback networking for tests: a port nobody listens on yet, and the status of one HTTP GET
//! with a deadline. No retries here — waiting is [`super::eventually`]'s job.

use std::net::TcpListener;
use std::time::Duration;

/// A loopback port that was free a moment ago (bound to port 0, then released), for a server the
/// test is about to start. Another process may take it in between; on this machine that race has
/// not been seen.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener
        .local_addr()
        .expect("local address of a bound socket")
        .port()
}

/// `GET url` within `deadline`: the response status, or the error as text (connection refused,
/// timed out …) for failure messages.
pub async fn http_status(
    http: &reqwest::Client,
    url: &str,
    deadline: Duration,
) -> Result<u16, String> {
    http.get(url)
        .timeout(deadline)
        .send()
        .await
        .map(|response| response.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}
