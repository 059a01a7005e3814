//! `temu-sync` command line: run the daemon, check the configuration or the tokens, apply
//! migrations, show the sync status, run the demo. Owns: parsing the arguments, loading the
//! configuration once and mapping each outcome to an exit code; the work itself is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use temu_sync::config::Config;
use temu_sync::exit;

/// Keeps a Temu seller's orders, products and after-sales copied into PostgreSQL.
///
/// Exit codes: 0 clean stop, 69 a dependency stayed unavailable or too many restarts,
/// 70 internal error, 78 invalid configuration.
#[derive(Parser, Debug)]
#[command(name = "temu-sync", version, about, long_about)]
struct Cli {
    /// Configuration file (YAML). Every key can be overridden with TEMU_SYNC__SECTION__KEY.
    #[arg(
        long,
        short = 'c',
        global = true,
        default_value = "config.yaml",
        env = "TEMU_SYNC_CONFIG"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default): supervisor, database pool, sync actors, HTTP endpoint.
    Run,
    /// Validate the configuration and print the effective values, secrets masked.
    CheckConfig,
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
    /// Show every shop × stream: state, data up to, last success, last run, last error
    /// (read from the database, so it covers every daemon that shares it).
    Status,
    /// Quick start: sync from a built-in Temu simulator into PostgreSQL (database name + `_demo`)
    /// and compare the result with the simulator's ground truth.
    Demo {
        /// Simulated shops.
        #[arg(long, default_value_t = 2)]
        shops: usize,
        /// Orders per shop (products: half as many, after-sales: a fifth).
        #[arg(long, default_value_t = 3000)]
        orders: usize,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// More of the daemon's own log (warnings only by default): -v info, -vv debug.
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
    },
    /// Ask Temu about every shop's access token: mall id, expiry and scopes.
    /// Exits 0 when every token is usable (expiring soon only warns), 1 when one is refused or expired.
    CheckToken,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, warnings) = match Config::load_with_warnings(&cli.config) {
        Ok(loaded) => (loaded.config, loaded.warnings),
        Err(e) => {
            eprintln!("temu-sync: invalid configuration:\n{e}");
            eprintln!(
                "(exit {}: fix the keys named above; `temu-sync check-config` re-checks)",
                exit::CONFIG
            );
            return ExitCode::from(exit::CONFIG as u8);
        }
    };
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::CheckConfig = command {
        return ExitCode::from(check_config(&config, &warnings, &cli.config) as u8);
    }
    // The demo draws its own display and keeps the daemon's log quiet; every other command logs
    // as configured.
    let (command, demo_screen) = match command {
        Command::Demo { verbose, .. } => {
            let screen = temu_sync::app::demo::Screen::for_stderr();
            (command, Some((screen, verbose)))
        }
        other => (other, None),
    };
    let logging = match &demo_screen {
        Some((screen, verbose)) => screen.init_logging(&config.log, *verbose),
        None => temu_sync::telemetry::init(&config.log),
    };
    if let Err(e) = logging {
        eprintln!("temu-sync: {e}");
        return ExitCode::from(exit::CONFIG as u8);
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("temu-sync: cannot start the async runtime: {e}");
            return ExitCode::from(exit::SOFTWARE as u8);
        }
    };
    let code = runtime.block_on(run_command(command, config, demo_screen.map(|(s, _)| s)));
    // Don't wait for stray blocking tasks (e.g. a migration stuck on a dead socket) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code as u8)
}

/// `check-config`: validation, then everything `run` builds is built (the database connector
/// with its TLS CA file, the Temu client, the sync actors' dependencies) without connecting;
/// prints the warnings and the effective configuration, secrets masked.
fn check_config(config: &Config, warnings: &[String], path: &Path) -> i32 {
    if let Err(e) = temu_sync::app::check_buildable(config) {
        eprintln!("temu-sync: invalid configuration:\n{e}");
        return exit::CONFIG;
    }
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", config.masked_yaml());
    eprintln!("configuration OK: {}", path.display());
    exit::OK
}

/// Every command but `check-config`, on the runtime; the exit code. `screen` is the demo's.
async fn run_command(
    command: Command,
    config: Config,
    screen: Option<temu_sync::app::demo::Screen>,
) -> i32 {
    match command {
        Command::Migrate => migrate(&config).await,
        Command::Status => status(&config).await,
        Command::Demo {
            shops,
            orders,
            seed,
            ..
        } => {
            let options = temu_sync::app::demo::DemoOptions {
                shops: shops.clamp(1, 50),
                orders,
                seed,
            };
            let screen = screen.unwrap_or_else(temu_sync::app::demo::Screen::for_stderr);
            temu_sync::app::demo::run(config, options, screen).await
        }
        Command::CheckToken => check_token(&config).await,
        Command::Run | Command::CheckConfig => temu_sync::app::run(config).await,
    }
}

async fn migrate(config: &Config) -> i32 {
    match temu_sync::app::migrate(config).await {
        Ok(applied) => {
            println!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("temu-sync: migrate failed: {e}");
            if e.is_unavailable() {
                exit::UNAVAILABLE
            } else {
                exit::SOFTWARE
            }
        }
    }
}

async fn status(config: &Config) -> i32 {
    match temu_sync::app::status::load(config).await {
        Ok(rows) => {
            print!(
                "{}",
                temu_sync::app::status::render(&rows, chrono::Utc::now())
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("temu-sync: cannot read the sync status: {e}");
            exit::UNAVAILABLE
        }
    }
}

/// 0 when every token is usable, 1 when one is refused or expired.
async fn check_token(config: &Config) -> i32 {
    let mut stdout = std::io::stdout();
    match temu_sync::temu::run_check_token(config, &mut stdout).await {
        Ok(true) => exit::OK,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("temu-sync: check-token failed: {e}");
            exit::UNAVAILABLE
        }
    }
}
