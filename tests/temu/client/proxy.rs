//! Calls through an authenticated HTTP proxy (a small proxy of the test's own).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::page;
use crate::common::*;
use temu_sync::config::ProxyConfig;
use temu_sync::sim::{SimConfig, Simulator};
use temu_sync::temu::{ErrorClass, TemuError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP forward proxy with Basic proxy authentication; counts the requests it relayed.
async fn start_http_proxy(user: &str, pass: &str) -> (String, Arc<AtomicU64>) {
    use base64_like::encode;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let expected = format!("Basic {}", encode(&format!("{user}:{pass}")));
    let relayed = Arc::new(AtomicU64::new(0));
    let count = relayed.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let expected = expected.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n =
                        match tokio::time::timeout(Duration::from_secs(5), inbound.read(&mut buf))
                            .await
                        {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => return,
                        };
                    head.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let authorized = text.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("proxy-authorization:")
                        && l[20..].trim() == expected
                });
                if !authorized {
                    let _ = inbound
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                // "POST http://host:port/path HTTP/1.1": relay the connection to host:port as is.
                let target = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|u| u.strip_prefix("http://"))
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or_default()
                    .to_string();
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if outbound.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::io::copy_bidirectional(&mut inbound, &mut outbound),
                )
                .await;
            });
        }
    });
    (format!("http://{addr}"), relayed)
}

mod base64_like {
    /// Standard base64 (enough for a Basic header in a test).
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            out.push(T[(n >> 18) as usize & 63] as char);
            out.push(T[(n >> 12) as usize & 63] as char);
            out.push(if chunk.len() > 1 {
                T[(n >> 6) as usize & 63] as char
            } else {
                '='
            });
            out.push(if chunk.len() > 2 {
                T[n as usize & 63] as char
            } else {
                '='
            });
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_an_authenticated_http_proxy() {
    init_log_capture();
    let cfg = SimConfig::demo(26, 1, 10);
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (apps, shops) = configs_for(&sim, &cfg);
    let proxy_pass = "proxy-pass-s3cr3t";
    let (proxy_url, relayed) = start_http_proxy("seller", proxy_pass).await;
    let mut t = fast_temu_config();
    t.max_retries = 0;
    t.proxy = Some(ProxyConfig {
        url: proxy_url.clone(),
        username: Some("seller".into()),
        password: Some(secret(proxy_pass)),
    });
    let client = client_with(&t, &apps, &shops, fast_tuning());
    let shop0 = shop_of(&client, "shop-0");
    client.list_orders(&shop0, &page(1)).await.unwrap();
    assert!(
        relayed.load(Ordering::SeqCst) >= 1,
        "the call went through the proxy"
    );
    assert_eq!(sim.outcome_count(1_000_000), 1);

    // Wrong proxy password: 407, fatal (configuration), and the password is nowhere.
    t.proxy = Some(ProxyConfig {
        url: proxy_url,
        username: Some("seller".into()),
        password: Some(secret("wrong-proxy-pass")),
    });
    let client = client_with(&t, &apps, &shops, fast_tuning());
    let shop0 = shop_of(&client, "shop-0");
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    assert!(matches!(e, TemuError::Http { status: 407, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Fatal);
    let shown = format!("{e} {e:?} {client:?}");
    assert!(!shown.contains(proxy_pass) && !shown.contains("wrong-proxy-pass"));
    assert_no_secrets_logged(&cfg, &[proxy_pass, "wrong-proxy-pass"]);
}
