//! What the host must offer, and the Debian 12 root tree the containers boot.
//!
//! Owns: [`unavailable`] (why this machine cannot boot a container, if it cannot) and
//! [`root_tree`]: a `debootstrap --variant=minbase` tree, built once per machine under
//! `/var/cache/temu-sync-tests` (or `$TEMU_SYNC_TEST_CACHE`) behind a file lock and renamed into
//! place only when complete, so a killed build never leaves a half tree that a later run trusts.
//! Its name carries a hash of the package list, so a changed list builds a new tree beside the
//! old one instead of changing a tree another run may be booting.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What the tree holds beyond minbase: systemd and its bus, `/bin/kill` (the unit's
/// `ExecReload=`), and what the package depends on (adduser, ca-certificates: without root
/// certificates the daemon cannot build its HTTPS client).
pub const INCLUDE: &str = "systemd,dbus,procps,adduser,ca-certificates";

/// The Debian release of the tree; the host's binary runs in it unchanged.
const SUITE: &str = "bookworm";

/// Longest wait for another process's debootstrap (its lock) or for our own.
const BUILD_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Why containers cannot be booted here (then the tests skip, or fail in CI), or `None`.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (systemd-nspawn needs root)".to_string());
    }
    for (tool, package) in [
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("nsenter", "util-linux"),
        ("dpkg-shlibdeps", "dpkg-dev"),
    ] {
        if !on_path(tool) {
            return Some(format!(
                "`{tool}` is missing: apt-get install {package} (.ci/run does)"
            ));
        }
    }
    if !Path::new("/sys/fs/cgroup/unified").is_dir() && !cgroup2_root() {
        return Some("no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified".into());
    }
    None
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// The unified hierarchy mounted at /sys/fs/cgroup itself (a pure cgroup v2 host).
pub fn cgroup2_root() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
}

/// The cached root tree, built first if this machine has none yet.
pub fn root_tree() -> Result<PathBuf, String> {
    let cache = std::env::var_os("TEMU_SYNC_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/temu-sync-tests"));
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let tree = cache.join(format!("{SUITE}-{:08x}", fnv1a(INCLUDE)));
    if tree.join("usr/lib/systemd/systemd").exists() {
        return Ok(tree);
    }
    let _lock = lock(&cache.join(format!("{SUITE}.lock")))?;
    if tree.join("usr/lib/systemd/systemd").exists() {
        return Ok(tree); // another run built it while we waited
    }
    let partial = cache.join(format!(".{SUITE}-partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    remove_stale_partials(&cache);
    let started = Instant::now();
    let mirror = mirror();
    eprintln!(
        "systemd tests: debootstrap {SUITE} from {mirror} into {} (once per machine)",
        tree.display()
    );
    let out = Command::new("timeout")
        .arg(BUILD_LIMIT.as_secs().to_string())
        .arg("debootstrap")
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
        .arg(&partial)
        .arg(&mirror)
        .output()
        .map_err(|e| format!("cannot run debootstrap: {e}"))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&partial);
        let log = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        return Err(format!(
            "debootstrap failed ({}):\n{}\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fs::rename(&partial, &tree).map_err(|e| format!("cannot move the new tree into place: {e}"))?;
    eprintln!(
        "systemd tests: root tree ready in {:.1?}",
        started.elapsed()
    );
    Ok(tree)
}

/// Partial trees of runs that died (their pid is gone).
fn remove_stale_partials(cache: &Path) {
    let prefix = format!(".{SUITE}-partial-");
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// An exclusive `flock` on `path`, waited for at most [`BUILD_LIMIT`]; released when dropped.
fn lock(path: &Path) -> Result<File, String> {
    let file = File::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let deadline = Instant::now() + BUILD_LIMIT;
    loop {
        // SAFETY: the descriptor belongs to `file`, which outlives the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} stayed locked for {BUILD_LIMIT:?} (another debootstrap?)",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The Debian mirror apt already uses on this host (deb822 `URIs:` or a `deb` line), else the CDN.
fn mirror() -> String {
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let from_deb822 = deb822
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|uri| !uri.contains("security"));
    if let Some(uri) = from_deb822 {
        return uri.to_string();
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .map(str::split_whitespace)
        .filter_map(|mut words| match (words.next(), words.next()) {
            (Some("deb"), Some(uri)) if !uri.contains("security") => Some(uri.to_string()),
            _ => None,
        })
        .next()
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// FNV-1a, 32 bits: a stable short name for the package list.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}
