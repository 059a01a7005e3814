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
/// 70 internal error, 78 invalid configuration (operator commands: see `audit --help`).
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
        /// When no PostgreSQL answers, say what to do and exit 69 instead of starting a
        /// throwaway cluster of the installed server binaries.
        #[arg(long)]
        no_own_cluster: bool,
    },
    /// Ask Temu about every shop's access token: mall id, expiry and scopes.
    /// Exits 0 when every token is usable (expiring soon only warns), 1 when one is refused or expired.
    CheckToken,
    /// Self-audit: for each UTC day, Temu's total (one call, pageSize 1, by update time) against
    /// the stored count; products: the listing's total against the products not removed. Prints
    /// the days that differ. Exit 0 none differ (or all repaired), 1 some remain, 69 Temu or the
    /// database unreachable, 78 bad arguments.
    Audit {
        /// Only this shop (default: every configured shop).
        #[arg(long)]
        shop: Option<String>,
        /// Only this stream: orders, aftersales or products.
        #[arg(long)]
        stream: Option<String>,
        /// How far back: whole UTC days from the day of now minus this.
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// Re-walk the days that differ (the cursor is not moved) and audit them again.
        #[arg(long)]
        repair: bool,
        /// How long to wait for the stream's lease while a daemon holds it (with --repair).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        lease_wait: std::time::Duration,
    },
    /// Re-walk a range of an update-time stream without touching its cursor (takes the
    /// stream's lease). DATE: YYYY-MM-DD (UTC) or RFC 3339; --to may be today.
    /// Exit 0 done, 1 failed, 69 Temu or the database unreachable, 78 bad arguments.
    Backfill {
        #[arg(long)]
        shop: String,
        #[arg(long)]
        stream: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// How long to wait for the stream's lease while a daemon holds it.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        lease_wait: std::time::Duration,
    },
    /// Clear a stream's cursor: its next run backfills sync.initial_window again. Asks for
    /// confirmation on a terminal; pass --yes otherwise. Exit codes as for backfill.
    Reset {
        #[arg(long)]
        shop: String,
        #[arg(long)]
        stream: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// How long to wait for the stream's lease while a daemon holds it.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        lease_wait: std::time::Duration,
    },
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
            no_own_cluster,
            ..
        } => {
            let options = temu_sync::app::demo::DemoOptions {
                shops: shops.clamp(1, 50),
                orders,
                seed,
                own_cluster: !no_own_cluster,
            };
            let screen = screen.unwrap_or_else(temu_sync::app::demo::Screen::for_stderr);
            temu_sync::app::demo::run(config, options, screen).await
        }
        Command::CheckToken => check_token(&config).await,
        command @ (Command::Audit { .. } | Command::Backfill { .. } | Command::Reset { .. }) => {
            operator_command(command, &config).await
        }
        Command::Run | Command::CheckConfig => temu_sync::app::run(config).await,
    }
}

/// `audit`, `backfill`, `reset` (`temu_sync::app::ops`).
async fn operator_command(command: Command, config: &Config) -> i32 {
    use temu_sync::app::ops;
    match command {
        Command::Audit {
            shop,
            stream,
            since,
            repair,
            lease_wait,
        } => {
            let args = ops::AuditArgs {
                shop,
                stream,
                since,
                repair,
                lease_wait,
            };
            ops::audit(config, args).await
        }
        Command::Backfill {
            shop,
            stream,
            from,
            to,
            lease_wait,
        } => {
            ops::run_cli(config, lease_wait, |op| async move {
                ops::backfill(&op, &shop, &stream, &from, &to).await
            })
            .await
        }
        Command::Reset {
            shop,
            stream,
            yes,
            lease_wait,
        } => {
            ops::run_cli(config, lease_wait, |op| async move {
                ops::target(&op, &shop, &stream)?;
                ops::confirm_reset(&shop, &stream, yes)?;
                ops::reset(&op, &shop, &stream).await
            })
            .await
        }
        _ => exit::SOFTWARE,
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
            if matches!(e, temu_sync::db::DbError::SchemaNewer { .. }) {
                exit::CONFIG
            } else if e.is_unavailable() {
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
