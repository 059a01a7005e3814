//! Limits on clients and connections: the per-client rate limit (429 with Retry-After, probes
//! never limited), a client that never finishes its headers, an idle keep-alive connection, and
//! connections beyond the cap (over raw TCP).

use super::*;

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after_but_probes_are_never_limited() {
    let mut config = config();
    config.rate_limit_per_second = 1;
    config.rate_limit_burst = 3;
    let server = start_with(config, healthy(), alive(), None).await;
    let client = client();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..8 {
        let response = get(&client, &server, "/nope").await;
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            limited = Some(response);
        }
    }
    assert_eq!(&statuses[..3], &[404, 404, 404], "{statuses:?}");
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    let retry_after: u64 = header(&limited, "retry-after")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1, "{retry_after}");
    let body = assert_problem(limited, 429).await;
    assert_eq!(body["type"], "urn:temu-sync:problem:rate-limited");

    for path in ["/health", "/livez", "/readyz"] {
        for _ in 0..20 {
            let response = client.get(server.url(path)).send().await.expect("request");
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Connection handling (raw TCP)

/// Reads one HTTP/1.1 response (head and Content-Length body) and returns the head and the body.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((head, buf[head_end..head_end + length].to_vec()))
}

async fn raw_get(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let (head, _) = tokio::time::timeout(BOUND, read_response(stream))
        .await
        .expect("response in time")
        .expect("response");
    head
}

/// Waits until the server closes `stream` (EOF or reset); returns how long that took.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                // hyper may answer 408 before closing; keep reading until the close.
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    started.elapsed()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mut config = config();
    config.header_read_timeout = Duration::from_millis(300);
    let server = start_with(config, healthy(), alive(), None).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .expect("write");
    let took = closed_within(&mut stream, BOUND).await;
    assert!(took >= Duration::from_millis(250), "{took:?}");
    // The server is fine.
    let response = get(&client(), &server, "/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mut config = config();
    config.header_read_timeout = Duration::from_millis(300);
    let server = start_with(config, healthy(), alive(), None).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = raw_get(&mut stream, "/health").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    closed_within(&mut stream, BOUND).await;
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let mut config = config();
    config.max_connections = 2;
    config.header_read_timeout = Duration::from_secs(30);
    let server = start_with(config, healthy(), alive(), None).await;

    // Two connections, each served once and then held open (keep-alive).
    let mut first = TcpStream::connect(server.addr).await.expect("connect");
    let mut second = TcpStream::connect(server.addr).await.expect("connect");
    assert!(raw_get(&mut first, "/health")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(raw_get(&mut second, "/health")
        .await
        .starts_with("HTTP/1.1 200"));

    // A third connects (the kernel backlog takes it) but is not served while both are open.
    let mut third = TcpStream::connect(server.addr).await.expect("connect");
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let early = tokio::time::timeout(Duration::from_millis(500), read_response(&mut third)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");

    // Closing one frees its slot and the waiting request is answered.
    drop(first);
    let (head, _) = tokio::time::timeout(BOUND, read_response(&mut third))
        .await
        .expect("served once a slot is free")
        .expect("response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The second connection still works.
    assert!(raw_get(&mut second, "/health")
        .await
        .starts_with("HTTP/1.1 200"));
    server.stop().await;
}
