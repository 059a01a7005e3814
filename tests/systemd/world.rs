//! The world the checks share: the package built from the test's own binary, a simulator and a
//! fresh database on the host, and one booted container with the package installed and
//! configured as an operator would (secrets as credentials through the documented drop-in).
//!
//! Built once, on first use, under [`SERIAL`], which also runs the checks one at a time (they
//! start, freeze and stop the same service). Torn down at process exit (`atexit`): the container
//! halted and its cgroups removed, the database dropped, the temporary files removed — whether
//! the checks passed or not. When the machine cannot boot containers every check says why and is
//! skipped, unless `TEMU_SYNC_REQUIRE_SYSTEMD_TESTS=1` (set by .ci/run) makes that a failure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use temu_sync::sim::{SimConfig, SimHandle, Simulator};
use temu_sync::testkit::{eventually_some, free_port, TestDatabase};

use super::container::{Container, SHARED};
use super::host;

pub const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");
pub const UNIT: &str = "temu-sync.service";
pub const SHOP: &str = "shop-0";
pub const ADMIN_TOKEN: &str = "systemd-test-admin-token-0123456789";

/// Faster watchdog and restart than the shipped unit's (30 s, 5 s), so the freeze check takes
/// seconds: a drop-in of the test's own, the only change to the packaged unit.
pub const TEST_TIMING: &str = "[Service]\nWatchdogSec=3s\nRestartSec=500ms\n";

/// Runs the checks one at a time; the world is built under it.
static SERIAL: Mutex<()> = Mutex::new(());
static WORLD: OnceLock<Result<World, String>> = OnceLock::new();

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub sim: SimHandle,
    sim_config: SimConfig,
    pub http: reqwest::Client,
    /// The daemon's HTTP port (the container shares the host's network).
    pub port: u16,
    pub db_url: String,
    /// The package (of the test's own binary), as containers see it.
    pub deb_inside: String,
    pub tree: PathBuf,
    pub shared: PathBuf,
    pub main: Container,
    db: Mutex<Option<TestDatabase>>,
}

/// The world and the turn to use it, or `None` (after saying why) when this machine cannot boot
/// containers.
pub fn world() -> Option<(MutexGuard<'static, ()>, &'static World)> {
    let turn = SERIAL.lock();
    if let Some(why) = host::unavailable() {
        if std::env::var("TEMU_SYNC_REQUIRE_SYSTEMD_TESTS").as_deref() == Ok("1") {
            panic!("the real-systemd tests must run here, but {why}");
        }
        say(&format!(
            "SKIPPED: cannot boot a systemd container here: {why}"
        ));
        return None;
    }
    let world = WORLD.get_or_init(|| {
        let started = Instant::now();
        let built = World::build();
        say(&format!("world ready in {:.2?}", started.elapsed()));
        built
    });
    match world {
        Ok(world) => Some((turn, world)),
        Err(why) => panic!("the systemd test world could not be built: {why}"),
    }
}

/// One line on stderr, past the test harness's capture, so the timings show in every run.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "systemd tests: {line}");
}

/// Runs `f` and prints how long it took under `what`.
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    let took = started.elapsed();
    say(&format!("{what}: {took:.2?}"));
    (value, took)
}

impl World {
    fn build() -> Result<World, String> {
        let (tree, _) = timed("root tree (debootstrap once per machine)", host::root_tree);
        let tree = tree?;
        let shared = std::env::temp_dir().join(format!("temu-sync-systemd-{}", std::process::id()));
        std::fs::create_dir_all(&shared).map_err(|e| e.to_string())?;
        let (deb, _) = timed("scripts/build-deb.sh", || build_deb(&shared));
        let deb = deb?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let sim_config = SimConfig::demo(16, 1, 400);
        let sim = rt
            .block_on(Simulator::start(sim_config.clone()))
            .map_err(|e| format!("simulator: {e}"))?;
        let db = TestDatabase::reserve("systemd")?;
        let name = format!("temu-sync-test-{}-main", std::process::id());
        let (main, _) = timed("boot (nspawn until is-system-running)", || {
            Container::boot(&tree, &name, &shared)
        });
        let deb_inside = inside(&deb);
        let world = World {
            http: reqwest::Client::new(),
            port: free_port(),
            db_url: db.url(),
            deb_inside,
            tree,
            shared,
            main: main?,
            db: Mutex::new(Some(db)),
            sim,
            sim_config,
            rt,
        };
        let (installed, _) = timed("dpkg -i and configure", || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                world.install_and_configure()
            }))
        });
        if let Err(panic) = installed {
            world.main.halt();
            return Err(panic_text(&*panic));
        }
        // SAFETY: `teardown` is an `extern "C" fn()` that only touches the world through its
        // OnceLock and locks; registering it has no other precondition.
        unsafe { libc::atexit(teardown) };
        Ok(world)
    }

    /// As an operator would: install, fill in the config, secrets as credential files and the
    /// packaged example drop-in (plus the admin token's line), then the test's timing drop-in.
    fn install_and_configure(&self) {
        let c = &self.main;
        c.sh(&format!("dpkg -i {}", self.deb_inside));
        let app = &self.sim_config().apps[0];
        let shop = &self.sim_config().shops[0];
        c.sh("install -d -m 0700 /etc/temu-sync/credentials");
        for (name, value) in [
            ("temu_app_secret", app.app_secret.as_str()),
            ("temu_access_token", shop.access_token.as_str()),
            // Loaded by the example drop-in; the host's PostgreSQL trusts loopback, so unused.
            ("db_password", "unused-with-trust-auth"),
            ("admin_token", ADMIN_TOKEN),
        ] {
            let path = format!("/etc/temu-sync/credentials/{name}");
            c.write(&path, value);
            c.sh(&format!("chmod 0600 {path}"));
        }
        c.write("/etc/temu-sync/config.yaml", &self.config_yaml());
        let dropins = "/etc/systemd/system/temu-sync.service.d";
        c.sh(&format!(
            "mkdir -p {dropins} && cp /usr/share/doc/temu-sync/examples/credentials.conf {dropins}/"
        ));
        c.write(
            &format!("{dropins}/admin-token.conf"),
            "[Service]\nLoadCredential=admin_token:/etc/temu-sync/credentials/admin_token\n",
        );
        c.write(&format!("{dropins}/test-timing.conf"), TEST_TIMING);
        c.sh("systemctl daemon-reload");
    }

    fn sim_config(&self) -> &SimConfig {
        &self.sim_config
    }

    /// The configuration the operator writes: one app and one shop on the simulator, every
    /// secret a credential, the rest defaults — but for `sync`: the window covers the simulator's
    /// whole history (90 days) and nothing is left to settle, so one run gets every record.
    fn config_yaml(&self) -> String {
        let app = &self.sim_config().apps[0];
        format!(
            "http:\n  listen: 127.0.0.1:{port}\n  admin_token: {{credential: admin_token}}\n\
             database:\n  url: {db}\n  password: {{credential: db_password}}\n\
             apps:\n  - {{ name: main, app_key: \"{key}\", app_secret: {{credential: temu_app_secret}}, qps: {qps} }}\n\
             shops:\n  - {{ name: {SHOP}, region: us, app: main, access_token: {{credential: temu_access_token}}, base_url: \"{router}\" }}\n\
             sync:\n  initial_window: 91d\n  settle: 0s\n",
            port = self.port,
            db = self.db_url,
            key = app.app_key,
            qps = app.qps,
            router = self.sim.router_url(),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One `GET` with a 5 s deadline: the status and body, or why there was none.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let response = self
            .http
            .get(self.url(path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }

    /// [`World::get`] from synchronous code.
    pub fn get_now(&self, path: &str) -> Result<(u16, String), String> {
        self.rt.block_on(self.get(path))
    }

    /// A connection to the daemon's database (on the host), once the daemon has created it.
    pub fn db(&self) -> tokio_postgres::Client {
        let connected = self
            .rt
            .block_on(eventually_some(Duration::from_secs(60), || async {
                let (client, conn) = tokio_postgres::connect(&self.db_url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                Some(client)
            }));
        connected.expect("the daemon created its database within 60 s")
    }

    /// A property of the unit (`systemctl show -p NAME --value`).
    pub fn unit(&self, property: &str) -> String {
        self.main
            .sh(&format!("systemctl show {UNIT} -p {property} --value"))
    }

    pub fn main_pid(&self) -> u32 {
        self.unit("MainPID").parse().expect("MainPID is a number")
    }

    /// Starts the service unless it is active (clearing an earlier failure first).
    pub fn ensure_running(&self) {
        if self.unit("ActiveState") != "active" {
            self.main.sh(&format!(
                "systemctl reset-failed {UNIT}; systemctl start {UNIT}"
            ));
        }
    }

    /// The journal of the unit as JSON records (`journalctl -u … -o json`).
    pub fn journal(&self) -> Vec<serde_json::Value> {
        self.main
            .sh(&format!("journalctl -u {UNIT} -o json --no-pager"))
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// The package of the test's own binary, built by the documented script (uncompressed: faster).
fn build_deb(out: &Path) -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-deb.sh");
    let output = std::process::Command::new(script)
        .arg("--binary")
        .arg(BIN)
        .arg("--fast")
        .arg("--out")
        .arg(out)
        .output()
        .map_err(|e| format!("cannot run scripts/build-deb.sh: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "scripts/build-deb.sh failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim();
    Ok(PathBuf::from(path))
}

/// A caught panic's message.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".to_string())
}

/// Where a file of the shared directory appears inside a container.
fn inside(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    format!("{SHARED}/{}", name.unwrap_or_default())
}

/// Process exit: halt the container, drop the database, remove the shared files.
extern "C" fn teardown() {
    let Some(Ok(world)) = WORLD.get() else {
        return;
    };
    world.main.halt();
    drop(world.db.lock().take());
    let _ = std::fs::remove_dir_all(&world.shared);
}
