//! A Debian 12 container booted with systemd as its PID 1 (`systemd-nspawn --boot`), and commands
//! run inside it.
//!
//! Owns: booting ([`Container::boot`]: a cgroup of its own, `--volatile=overlay` over the cached
//! tree so writes vanish with the container, the host's network, a read-only bind of the test's
//! files at [`SHARED`]), running commands inside (`nsenter` into PID 1's namespaces, each under
//! `timeout`), and tearing down. Teardown does not depend on this process ending well: nspawn runs
//! under a small guard script that halts the container (SIGTERM to nspawn, then SIGKILL), kills
//! what is left in its cgroups and removes them as soon as its stdin closes — when the test closes
//! it, and also when the test process dies for any reason, since the kernel closes the pipe then.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Where the test's own files (the .deb) appear inside the container, read-only.
pub const SHARED: &str = "/opt/temu-sync-test";

/// Longest a command inside may run (`timeout`); a check's own waits are shorter.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// Longest boot: nspawn up, PID 1 found, `systemctl is-system-running --wait` answered.
const BOOT_LIMIT: Duration = Duration::from_secs(60);

/// The guard: joins the cgroups, starts nspawn, prints its pid, waits for stdin to close, then
/// halts the container and removes the cgroups (children first). Arguments:
/// `NAME LOG HIERARCHY… -- NSPAWN-ARGUMENTS…`.
const GUARD: &str = r#"
set -u
name=$1; log=$2; shift 2
hierarchies=()
while [ "$1" != "--" ]; do hierarchies+=("$1"); shift; done
shift
for h in "${hierarchies[@]}"; do
    mkdir -p "$h/$name" && echo $$ >"$h/$name/cgroup.procs"
done
systemd-nspawn "$@" </dev/null >"$log" 2>&1 &
nspawn=$!
echo "$nspawn"
read -r _ || true
kill -TERM "$nspawn" 2>/dev/null
for _ in $(seq 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$nspawn" 2>/dev/null
wait "$nspawn" 2>/dev/null
for h in "${hierarchies[@]}"; do
    echo $$ >"$h/cgroup.procs"
    find "$h/$name" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    for _ in $(seq 50); do
        find "$h/$name" -depth -type d -exec rmdir {} + 2>/dev/null
        [ -d "$h/$name" ] || break
        sleep 0.1
    done
done
echo cleaned
"#;

/// A booted container. Dropping it does not stop it: call [`Container::halt`] (the guard also
/// halts it when this process exits).
pub struct Container {
    pub name: String,
    /// PID 1 of the container (its systemd), as the host sees it.
    init: u32,
    guard: Mutex<Option<(Child, ChildStdin)>>,
    log: PathBuf,
}

/// The cgroup hierarchies a container's cgroup is made in: the named systemd one and the unified
/// one of a hybrid host, or the unified root of a cgroup v2 host.
fn hierarchies() -> Vec<String> {
    if super::host::cgroup2_root() {
        return vec!["/sys/fs/cgroup".to_string()];
    }
    ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]
        .into_iter()
        .filter(|h| Path::new(h).is_dir())
        .map(str::to_string)
        .collect()
}

impl Container {
    /// Boots `tree` as machine (and host name) `name`, binding `shared` at [`SHARED`].
    pub fn boot(tree: &Path, name: &str, shared: &Path) -> Result<Container, String> {
        sweep_stale_cgroups();
        // The tree's /etc/hostname (the host's, copied by debootstrap) would win over
        // --hostname at boot; a bound file of our own says the machine's name.
        let hostname = shared.join(format!("{name}.hostname"));
        std::fs::write(&hostname, format!("{name}\n")).map_err(|e| e.to_string())?;
        let log = shared.join(format!("{name}.nspawn.log"));
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(GUARD).arg("guard").arg(name).arg(&log);
        cmd.args(hierarchies()).arg("--");
        cmd.args([
            "-q",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
        ])
        .arg("--console=pipe")
        .arg(format!("--directory={}", tree.display()))
        .arg(format!("--machine={name}"))
        .arg(format!("--hostname={name}"))
        .arg(format!("--bind-ro={}:{SHARED}", shared.display()))
        .arg(format!("--bind-ro={}:/etc/hostname", hostname.display()));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the nspawn guard: {e}"))?;
        let stdin = child.stdin.take().ok_or("guard without stdin")?;
        let stdout = child.stdout.take().ok_or("guard without stdout")?;
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .map_err(|e| format!("guard: {e}"))?;
        let nspawn: u32 = first
            .trim()
            .parse()
            .map_err(|_| format!("guard printed {first:?}, not nspawn's pid"))?;
        let container = Container {
            name: name.to_string(),
            init: 0,
            guard: Mutex::new(Some((child, stdin))),
            log,
        };
        let init = match container.find_init(nspawn) {
            Ok(init) => init,
            Err(e) => {
                container.halt();
                return Err(e);
            }
        };
        let container = Container { init, ..container };
        if let Err(e) = container.wait_booted() {
            container.halt();
            return Err(e);
        }
        Ok(container)
    }

    /// The container's PID 1: nspawn's child running systemd.
    fn find_init(&self, nspawn: u32) -> Result<u32, String> {
        let deadline = Instant::now() + BOOT_LIMIT;
        let children = format!("/proc/{nspawn}/task/{nspawn}/children");
        while Instant::now() < deadline {
            let listed = std::fs::read_to_string(&children).unwrap_or_default();
            for pid in listed
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return Ok(pid);
                }
            }
            if !Path::new(&format!("/proc/{nspawn}")).exists() {
                return Err(format!("systemd-nspawn ended:\n{}", self.nspawn_log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "no systemd under nspawn within {BOOT_LIMIT:?}:\n{}",
            self.nspawn_log()
        ))
    }

    /// Until the container's systemd says the boot is over (running or degraded).
    fn wait_booted(&self) -> Result<(), String> {
        let deadline = Instant::now() + BOOT_LIMIT;
        loop {
            let out = self.run("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the container did not finish booting within {BOOT_LIMIT:?} (state {state:?}, {}):\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.nspawn_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What nspawn and the container's console printed.
    pub fn nspawn_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `sh -c script` inside the container, as root, bounded by [`COMMAND_LIMIT`].
    pub fn run(&self, script: &str) -> Output {
        self.run_with_input(script, &[])
    }

    /// [`Container::run`] with `input` on the command's stdin.
    pub fn run_with_input(&self, script: &str, input: &[u8]) -> Output {
        let mut child = Command::new("timeout")
            .arg("--kill-after=5")
            .arg(COMMAND_LIMIT.as_secs().to_string())
            .args([
                "nsenter",
                "-t",
                &self.init.to_string(),
                "-a",
                "--",
                "/bin/sh",
                "-c",
            ])
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("nsenter: {e}"))
    }

    /// [`Container::run`], which must succeed: its stdout, trimmed.
    pub fn sh(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "in {}: `{script}` failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes `content` to `path` inside (through stdin, so no quoting), keeping an existing
    /// file's owner and mode.
    pub fn write(&self, path: &str, content: &str) {
        let out = self.run_with_input(&format!("cat > '{path}'"), content.as_bytes());
        assert!(
            out.status.success(),
            "cannot write {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Halts the container and removes its cgroups (the guard does it once its stdin closes);
    /// waits for the guard at most 20 s. A second call does nothing.
    pub fn halt(&self) {
        let Some((mut child, stdin)) = self.guard.lock().take() else {
            return;
        };
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
    }
}

/// Cgroups left by containers of test processes that no longer exist (a guard killed with its
/// whole process group), removed when empty.
fn sweep_stale_cgroups() {
    for h in hierarchies() {
        let Ok(entries) = std::fs::read_dir(&h) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("temu-sync-test-")
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = Command::new("find")
                    .arg(entry.path())
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", "+"])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
