//! Shared helpers of the Temu client and simulator tests: configs from a running simulator,
//! secrets built through serde, and a log capture that checks no secret was ever logged.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use temu_sync::config::{AppConfig, Secret, ShopConfig, TemuConfig};
use temu_sync::health::Health;
use temu_sync::metrics::Metrics;
use temu_sync::sim::{SimConfig, SimHandle, Simulator};
use temu_sync::temu::{ClientTuning, Observers, TemuClient, TemuShop};

/// Builds a `Secret` the way the config loader does: through serde.
pub fn secret(s: &str) -> Secret {
    serde_json::from_value(serde_json::json!(s)).unwrap()
}

pub fn app_config(name: &str, key: &str, secret_text: &str, qps: u32) -> AppConfig {
    serde_json::from_value(serde_json::json!({
        "name": name, "app_key": key, "app_secret": secret_text, "qps": qps
    }))
    .unwrap()
}

pub fn shop_config(name: &str, app: &str, token: &str, base_url: &str) -> ShopConfig {
    serde_json::from_value(serde_json::json!({
        "name": name, "region": "us", "app": app, "access_token": token, "base_url": base_url
    }))
    .unwrap()
}

/// Apps and shops matching a simulator config.
pub fn configs_for(sim: &SimHandle, cfg: &SimConfig) -> (Vec<AppConfig>, Vec<ShopConfig>) {
    let apps = cfg
        .apps
        .iter()
        .enumerate()
        .map(|(i, a)| app_config(&format!("app{i}"), &a.app_key, &a.app_secret, a.qps))
        .collect();
    let shops = cfg
        .shops
        .iter()
        .map(|s| {
            let app = cfg
                .apps
                .iter()
                .position(|a| a.app_key == s.app_key)
                .unwrap();
            shop_config(
                &s.name,
                &format!("app{app}"),
                &s.access_token,
                &sim.router_url(),
            )
        })
        .collect();
    (apps, shops)
}

/// A fast test configuration: short timeouts, few retries.
pub fn fast_temu_config() -> TemuConfig {
    TemuConfig {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(3),
        write_timeout: Duration::from_secs(2),
        pool_timeout: Duration::from_secs(5),
        max_connections: 16,
        max_keepalive_connections: 4,
        max_retries: 3,
        call_deadline: Duration::from_secs(20),
        ..TemuConfig::default()
    }
}

pub fn fast_tuning() -> ClientTuning {
    ClientTuning {
        breaker_threshold: 50,
        breaker_cool_off: Duration::from_millis(300),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
        rate_burst: 1,
    }
}

/// A simulator (`orders` orders per shop, app QPS `qps`) and a client pointed at it.
pub async fn sim_and_client(
    seed: u64,
    orders: usize,
    qps: u32,
    tweak: impl FnOnce(&mut TemuConfig, &mut ClientTuning),
) -> (SimHandle, SimConfig, TemuClient) {
    init_log_capture();
    let mut cfg = SimConfig::demo(seed, 2, orders);
    cfg.apps[0].qps = qps;
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (apps, shops) = configs_for(&sim, &cfg);
    let mut temu = fast_temu_config();
    let mut tuning = fast_tuning();
    tweak(&mut temu, &mut tuning);
    let client = TemuClient::build(&temu, &apps, &shops, tuning, Observers::default()).unwrap();
    (sim, cfg, client)
}

/// The client built with `tuning` and no observers.
pub fn client_with(
    temu: &TemuConfig,
    apps: &[AppConfig],
    shops: &[ShopConfig],
    tuning: ClientTuning,
) -> TemuClient {
    TemuClient::build(temu, apps, shops, tuning, Observers::default()).unwrap()
}

/// Observers that publish into `health` only.
pub fn observed_by(health: &Health) -> Observers {
    Observers {
        health: Some(health.clone()),
        ..Observers::default()
    }
}

/// Observers as in the daemon: `health` and `metrics`.
pub fn observed_by_both(health: &Health, metrics: &Metrics) -> Observers {
    Observers {
        health: Some(health.clone()),
        metrics: Some(metrics.clone()),
        ..Observers::default()
    }
}

/// A client with the fast test configuration and tuning, watched by `observers`.
pub fn observed_client(
    apps: &[AppConfig],
    shops: &[ShopConfig],
    observers: Observers,
) -> TemuClient {
    TemuClient::build(&fast_temu_config(), apps, shops, fast_tuning(), observers).unwrap()
}

/// The client's shop `name` (tests resolve a shop once, then pass the value on every call).
pub fn shop_of(client: &TemuClient, name: &str) -> TemuShop {
    client
        .shop(name)
        .unwrap_or_else(|| panic!("no shop {name:?} in the client"))
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Captures every log line of this test binary (all crates, TRACE) into memory.
pub fn init_log_capture() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    });
}

pub fn captured_logs() -> String {
    LOGS.get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap()).into_owned())
        .unwrap_or_default()
}

/// Asserts that no secret of `cfg` (app secrets, tokens) nor `extra` appears in the logs so far.
pub fn assert_no_secrets_logged(cfg: &SimConfig, extra: &[&str]) {
    let logs = captured_logs();
    for app in &cfg.apps {
        assert!(!logs.contains(&app.app_secret), "app secret in logs");
    }
    for shop in &cfg.shops {
        assert!(!logs.contains(&shop.access_token), "access token in logs");
    }
    for s in extra {
        assert!(!logs.contains(s), "secret {s:?}… in logs");
    }
}

/// Asserts an error's Display and Debug carry no secret of `cfg`.
pub fn assert_no_secrets_in(text: &str, cfg: &SimConfig) {
    for app in &cfg.apps {
        assert!(!text.contains(&app.app_secret), "app secret leaked: {text}");
    }
    for shop in &cfg.shops {
        assert!(!text.contains(&shop.access_token), "token leaked: {text}");
    }
}
