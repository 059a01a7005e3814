//! The bare-hyper baseline of the health section: this binary run again as
//! `bench --serve-bare PORT`, a separate process answering every request with a fixed 17-byte
//! health body, so `/health` of the daemon is compared with the least any hyper server does.

/// Serves the fixed body on 127.0.0.1:`port` until the process is killed.
pub fn serve_bare(port: u16) {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the bare server");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/health+json")
                            .body(Full::new(bytes::Bytes::from_static(
                                br#"{"status":"pass"}"#,
                            )))
                            .expect("static response"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
