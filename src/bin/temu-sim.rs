//! `temu-sim`: the Temu Open Platform simulator as a standalone server.
//!
//! Serves the router endpoint with seeded data and optional faults, prints the address and the
//! credentials to put in `config.yaml`, and runs until Ctrl-C. The same simulator runs in-process
//! in tests (`temu_sync::sim::Simulator`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use temu_sync::sim::{FaultConfig, Latency, SimConfig, Simulator};

#[derive(Parser, Debug)]
#[command(
    name = "temu-sim",
    about = "Simulates the Temu Open Platform router (for tests and local runs)"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Seed of the generated data (same seed, same data).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shops to simulate.
    #[arg(long, default_value_t = 2)]
    shops: usize,
    /// Parent orders per shop (products: half, after-sales: a fifth).
    #[arg(long, default_value_t = 1000)]
    orders: usize,
    /// QPS allowed per app key (excess answers 4000004).
    #[arg(long, default_value_t = 20)]
    qps: u32,
    /// Expected order mutations per order-list request.
    #[arg(long, default_value_t = 0.0)]
    mutate_rate: f64,
    /// Share of parent orders with children a cooperative warehouse fulfils (0 to 1; listed only
    /// when `fulfillmentTypeList` asks for `fulfillByCooperativeWarehouse`).
    #[arg(long, default_value_t = temu_sync::sim::DEMO_COOPERATIVE_SHARE)]
    cooperative_share: f64,
    /// Latency: uniform between these bounds, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_min_ms: u64,
    #[arg(long, default_value_t = 0)]
    latency_max_ms: u64,
    /// Fault rates (probability per request, 0..1).
    #[arg(long, default_value_t = 0.0)]
    fault_4000000: f64,
    #[arg(long, default_value_t = 0.0)]
    fault_502: f64,
    #[arg(long, default_value_t = 0.0)]
    fault_503: f64,
    #[arg(long, default_value_t = 0.0)]
    fault_429: f64,
    #[arg(long, default_value_t = 0.0)]
    fault_reset: f64,
    #[arg(long, default_value_t = 0.0)]
    fault_stall: f64,
    /// How long a stalled response waits, in seconds.
    #[arg(long, default_value_t = 60)]
    stall_secs: u64,
    #[arg(long, default_value_t = 0.0)]
    fault_truncated: f64,
    #[arg(long, default_value_t = 0.0)]
    fault_malformed: f64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut config = SimConfig::demo(args.seed, args.shops, args.orders);
    config.listen = args.listen;
    config.mutation_rate = args.mutate_rate;
    for shop in &mut config.shops {
        shop.cooperative_share = args.cooperative_share.clamp(0.0, 1.0);
    }
    for app in &mut config.apps {
        app.qps = args.qps.max(1);
    }
    config.faults = FaultConfig {
        latency: if args.latency_max_ms > 0 {
            Latency::Uniform {
                min: Duration::from_millis(args.latency_min_ms),
                max: Duration::from_millis(args.latency_max_ms),
            }
        } else {
            Latency::None
        },
        system_error: args.fault_4000000,
        http_502: args.fault_502,
        http_503: args.fault_503,
        http_429: args.fault_429,
        retry_after_secs: 1,
        reset: args.fault_reset,
        stall: args.fault_stall,
        stall_for: Duration::from_secs(args.stall_secs),
        truncated: args.fault_truncated,
        malformed: args.fault_malformed,
    };
    let apps = config.apps.clone();
    let shops = config.shops.clone();
    let sim = match Simulator::start(config).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("temu-sim: cannot listen on {}: {e}", args.listen);
            std::process::exit(temu_sync::exit::UNAVAILABLE);
        }
    };
    // These are simulator credentials, printed on purpose so they can be pasted into a config.
    println!("temu-sim listening on {}", sim.router_url());
    println!("apps:");
    for app in &apps {
        println!(
            "  - {{ name: sim, app_key: \"{}\", app_secret: \"{}\", qps: {} }}",
            app.app_key, app.app_secret, app.qps
        );
    }
    println!("shops:");
    for shop in &shops {
        println!(
            "  - {{ name: {}, region: us, app: sim, access_token: \"{}\", base_url: \"{}\" }}",
            shop.name,
            shop.access_token,
            sim.router_url()
        );
    }
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("temu-sim: cannot listen for Ctrl-C; stopping");
    }
    sim.shutdown().await;
}
