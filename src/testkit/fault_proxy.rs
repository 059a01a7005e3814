//! A fault-injecting TCP proxy: stands between the daemon and a dependency (PostgreSQL, the Temu
//! simulator) and, on command, refuses connections or blackholes them.
//!
//! Modes:
//! - [`FaultMode::Pass`]: forwards bytes both ways.
//! - [`FaultMode::Refuse`]: closes the listening socket (new connections get ECONNREFUSED) and
//!   cuts every open connection — the dependency is down.
//! - [`FaultMode::Blackhole`]: keeps accepting, but nothing is forwarded in either direction on
//!   new or open connections — the dependency hangs (a dead switch, a frozen VM).
//!
//! Only ever listens on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    Pass,
    Refuse,
    Blackhole,
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<FaultMode>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// Starts a proxy on an ephemeral loopback port forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr, mode: FaultMode) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(mode);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            Some(listener),
            addr,
            upstream,
            rx,
            stop.clone(),
        ));
        Ok(Self {
            addr,
            mode: tx,
            stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_mode(&self, mode: FaultMode) {
        let _ = self.mode.send(mode);
    }

    pub fn mode(&self) -> FaultMode {
        *self.mode.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<FaultMode>,
    stop: CancellationToken,
) {
    loop {
        let current = *mode.borrow_and_update();
        match (current, listener.is_some()) {
            (FaultMode::Refuse, true) => listener = None,
            (FaultMode::Pass | FaultMode::Blackhole, false) => {
                // Re-bind the same port; retry briefly if the kernel still holds it.
                for _ in 0..50 {
                    match TcpListener::bind(addr).await {
                        Ok(l) => {
                            listener = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = mode.changed() => if changed.is_err() { return },
            accepted = accept(listener.as_ref()) => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(relay(client, upstream, mode.clone(), stop.clone()));
                }
            }
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Forwards one connection while the mode allows; holds it silent in Blackhole, cuts it in Refuse.
async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<FaultMode>,
    stop: CancellationToken,
) {
    // A blackholed connection never reaches upstream until the mode changes.
    loop {
        match *mode.borrow_and_update() {
            FaultMode::Pass => break,
            FaultMode::Refuse => return,
            FaultMode::Blackhole => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = mode.changed() => if changed.is_err() { return },
        }
    }
    let Ok(Ok(mut server)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(upstream)).await
    else {
        return;
    };
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut sbuf = vec![0u8; 16 * 1024];
    loop {
        // While blackholed, stop moving bytes but keep both sockets open.
        while *mode.borrow() == FaultMode::Blackhole {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = mode.changed() => if changed.is_err() { return },
            }
        }
        if *mode.borrow() == FaultMode::Refuse {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = mode.changed() => if changed.is_err() { return },
            n = cr.read(&mut cbuf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if sw.write_all(&cbuf[..n]).await.is_err() { return },
            },
            n = sr.read(&mut sbuf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if cw.write_all(&sbuf[..n]).await.is_err() { return },
            },
        }
    }
}
