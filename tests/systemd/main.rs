//! The Debian package under a real systemd: Debian 12 booted with systemd-nspawn (systemd as
//! PID 1 of a container; `../shared` facts in docs/OPERATIONS.md's test section), the package built
//! by `scripts/build-deb.sh` from this build's binary and installed with `dpkg -i`, the daemon
//! pointed at the host's PostgreSQL (a fresh database) and the in-process simulator.
//!
//! Each check is its own test; they share one booted container (`world.rs`) and take turns.
//! `package.rs` boots a second container for the package's own life cycle (install, the shipped
//! config with no shops, upgrade, purge). Each check prints how long it took; the root tree is
//! debootstrapped once per machine and cached (`host.rs`), a boot takes well under a second.
//! Skipped, saying why, where containers cannot be booted (not root, no systemd-nspawn);
//! `.ci/run` installs what they need and makes a skip a failure.

mod container;
mod host;
mod package;
mod world;

use std::time::Duration;

use temu_sync::testkit::eventually;
use world::{say, timed, world, World, ADMIN_TOKEN, SHOP, UNIT};

/// Bound on waits for the daemon to get somewhere (a sync run, a restart).
const SETTLE: Duration = Duration::from_secs(60);

#[test]
fn start_returns_only_after_ready_and_health_answers() {
    let Some((_turn, w)) = world() else { return };
    w.main.sh(&format!(
        "systemctl stop {UNIT}; systemctl reset-failed {UNIT} || true"
    ));
    timed("check: systemctl start", || {
        w.main.sh(&format!("systemctl start {UNIT}"))
    });
    // Type=notify: start returned, so READY=1 came, and it comes after the listener is bound —
    // one request, no retry, must be answered.
    let first = w.get_now("/health");
    assert!(
        first.is_ok(),
        "/health right after `systemctl start`: {first:?}"
    );
    assert_eq!(w.unit("ActiveState"), "active");
    assert_eq!(w.unit("SubState"), "running");
    assert!(
        !w.unit("StatusText").is_empty(),
        "READY=1 came with a STATUS="
    );
    let passing = w.rt.block_on(eventually(SETTLE, || async {
        matches!(w.get("/health").await, Ok((200, _)))
    }));
    assert!(passing, "/health never passed: {:?}", w.get_now("/health"));
}

#[test]
fn status_shows_our_status_line() {
    let Some((_turn, w)) = world() else { return };
    w.ensure_running();
    let (line, _) = timed("check: STATUS= pass in systemctl status", || {
        w.rt.block_on(temu_sync::testkit::eventually_some(SETTLE, || async {
            let line = w.unit("StatusText");
            line.starts_with("pass: ").then_some(line)
        }))
    });
    let line = line.unwrap_or_else(|| panic!("no passing STATUS=: {:?}", w.unit("StatusText")));
    let status = w
        .main
        .sh(&format!("systemctl status {UNIT} --no-pager || true"));
    say(&format!("systemctl status shows: Status: \"{line}\""));
    assert!(
        status.contains(&format!("Status: \"{line}\"")),
        "systemctl status shows our line {line:?}:\n{status}"
    );
    assert!(line.ends_with("checks pass"), "{line}");
}

#[test]
fn journal_has_our_structured_fields_for_a_sync_run() {
    let Some((_turn, w)) = world() else { return };
    w.ensure_running();
    let (entry, _) = timed("check: journalctl -u temu-sync has a sync run", || {
        w.rt.block_on(temu_sync::testkit::eventually_some(SETTLE, || async {
            w.journal().into_iter().find(|e| {
                field(e, "MESSAGE") == Some("sync run succeeded") && field(e, "SHOP") == Some(SHOP)
            })
        }))
    });
    let entry =
        entry.unwrap_or_else(|| panic!("no `sync run succeeded` for {SHOP} in the journal"));
    say(&format!(
        "journal: MESSAGE={:?} SHOP={:?} STREAM={:?} RUN_ID={:?} PRIORITY={:?} SYSLOG_IDENTIFIER={:?}",
        field(&entry, "MESSAGE"),
        field(&entry, "SHOP"),
        field(&entry, "STREAM"),
        field(&entry, "RUN_ID"),
        field(&entry, "PRIORITY"),
        field(&entry, "SYSLOG_IDENTIFIER"),
    ));
    assert!(
        matches!(
            field(&entry, "STREAM"),
            Some("orders" | "products" | "aftersales")
        ),
        "{entry}"
    );
    assert_eq!(
        field(&entry, "PRIORITY"),
        Some("6"),
        "info is priority 6: {entry}"
    );
    assert!(field(&entry, "RUN_ID").is_some(), "{entry}");
    assert_eq!(
        field(&entry, "SYSLOG_IDENTIFIER"),
        Some("temu-sync"),
        "{entry}"
    );
    // The unit's journal is the daemon's native records, not lines of text on stderr.
    assert!(field(&entry, "_TRANSPORT") == Some("journal"), "{entry}");
}

fn field<'a>(entry: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    entry.get(name).and_then(|v| v.as_str())
}

#[test]
fn reload_keeps_the_main_pid() {
    let Some((_turn, w)) = world() else { return };
    w.ensure_running();
    let before = w.main_pid();
    let seen = sighup_lines(w);
    timed("check: systemctl reload", || {
        w.main.sh(&format!("systemctl reload {UNIT}"))
    });
    assert_eq!(w.main_pid(), before, "reload kept the process");
    assert_eq!(w.unit("ActiveState"), "active");
    let logged =
        w.rt.block_on(eventually(SETTLE, || async { sighup_lines(w) > seen }));
    assert!(logged, "the daemon logged the SIGHUP ExecReload= sent");
    let health = w.get_now("/health");
    assert!(matches!(health, Ok((200, _))), "{health:?}");
}

fn sighup_lines(w: &World) -> usize {
    w.journal()
        .iter()
        .filter(|e| field(e, "MESSAGE") == Some(temu_sync::app::SIGHUP_MESSAGE))
        .count()
}

#[test]
fn frozen_daemon_is_killed_by_the_watchdog_and_restarted_with_its_data_intact() {
    let Some((_turn, w)) = world() else { return };
    w.ensure_running();
    let client = w.db();
    let synced = w.rt.block_on(eventually(SETTLE, || async {
        synced_clean(w, &client).await
    }));
    assert!(
        synced,
        "the first sync never matched the simulator: {}",
        diff_summary(w, &client)
    );
    let orders_before = count_orders(w, &client);
    let frozen = w.main_pid();
    let restarts: u32 = w.unit("NRestarts").parse().expect("NRestarts");
    w.main.sh(&format!("kill -STOP {frozen}"));
    let (back, _) = timed("check: kill -STOP until restarted by the watchdog", || {
        w.rt.block_on(eventually(SETTLE, || async {
            let pid = w.main_pid();
            pid != 0 && pid != frozen && w.unit("ActiveState") == "active"
        }))
    });
    assert!(
        back,
        "not restarted: {}",
        w.main
            .sh(&format!("systemctl status {UNIT} --no-pager || true"))
    );
    let log = w
        .main
        .sh(&format!("journalctl -u {UNIT} --no-pager -o cat"));
    assert!(
        log.contains("Watchdog timeout"),
        "systemd's watchdog fired:\n{log}"
    );
    assert_eq!(
        w.unit("NRestarts").parse::<u32>().expect("NRestarts"),
        restarts + 1
    );
    say(&format!(
        "watchdog: pid {frozen} frozen, killed, restarted as {}",
        w.main_pid()
    ));
    // Data intact: the same rows, and a run of the new process completes and still matches.
    assert_eq!(count_orders(w, &client), orders_before);
    let runs_before = w.rt.block_on(succeeded_runs(&client));
    let triggered = w.rt.block_on(eventually(SETTLE, || async {
        trigger(w, "orders").await == Some(202)
    }));
    assert!(triggered, "POST /sync/{SHOP}/orders was not accepted");
    let ran = w.rt.block_on(eventually(SETTLE, || async {
        succeeded_runs(&client).await > runs_before && synced_clean(w, &client).await
    }));
    assert!(ran, "no clean run after the restart");
}

async fn synced_clean(w: &World, client: &tokio_postgres::Client) -> bool {
    let Ok(diff) = temu_sync::sim::verify::compare(client, &w.sim.ground_truth()).await else {
        return false;
    };
    diff.is_clean()
}

fn diff_summary(w: &World, client: &tokio_postgres::Client) -> String {
    match w.rt.block_on(temu_sync::sim::verify::compare(
        client,
        &w.sim.ground_truth(),
    )) {
        Ok(diff) => diff.summary(),
        Err(e) => e.to_string(),
    }
}

fn count_orders(w: &World, client: &tokio_postgres::Client) -> i64 {
    w.rt.block_on(client.query_one("SELECT count(*) FROM orders", &[]))
        .expect("count orders")
        .get(0)
}

async fn succeeded_runs(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE status = 'succeeded'",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(0)
}

/// `POST /sync/{shop}/{stream}` with the admin token (a credential of the unit): the status.
async fn trigger(w: &World, stream: &str) -> Option<u16> {
    w.http
        .post(w.url(&format!("/sync/{SHOP}/{stream}")))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[test]
fn stop_ends_with_result_success_within_timeout_stop_sec() {
    let Some((_turn, w)) = world() else { return };
    w.ensure_running();
    let limit = w.unit("TimeoutStopUSec");
    let limit = humantime::parse_duration(&limit).expect("TimeoutStopUSec");
    let (_, took) = timed("check: systemctl stop", || {
        w.main.sh(&format!("systemctl stop {UNIT}"))
    });
    assert!(
        took < limit,
        "stop took {took:?}, TimeoutStopSec is {limit:?}"
    );
    assert_eq!(w.unit("ActiveState"), "inactive");
    assert_eq!(w.unit("Result"), "success");
    assert_eq!(w.unit("ExecMainStatus"), "0", "exit code 0");
    say(&format!(
        "stop: Result=success in {took:.2?} (TimeoutStopSec={limit:?})"
    ));
}

#[test]
fn hardening_confines_writes_to_the_state_directory() {
    let Some((_turn, w)) = world() else { return };
    w.ensure_running();
    let pid = w.main_pid();
    let uid = w.main.sh("id -u temu-sync");
    let gid = w.main.sh("id -g temu-sync");
    let probe = "for p in /etc/x /usr/x /var/lib/x /var/lib/temu-sync/x /root/x /home/x /run/x \
                 /opt/x /tmp/probe-x; do \
                 if touch $p 2>/dev/null; then echo \"$p writable\"; else echo \"$p denied\"; fi; done";
    // The daemon's own view: its namespaces (mounts, users) and its user and group.
    let (seen, _) = timed("check: writes from the daemon's view", || {
        w.main.sh(&format!(
            "nsenter -t {pid} -a -S {uid} -G {gid} sh -c '{probe}'"
        ))
    });
    say(&format!("the daemon's view: {}", seen.replace('\n', ", ")));
    for line in seen.lines() {
        let (path, verdict) = line.split_once(' ').expect("path verdict");
        let expected = match path {
            "/var/lib/temu-sync/x" | "/tmp/probe-x" => "writable",
            _ => "denied",
        };
        assert_eq!(verdict, expected, "{path} from the daemon's view");
    }
    // Its /tmp is its own (PrivateTmp=): the probe is not in the machine's /tmp.
    assert_eq!(
        w.main
            .sh("test -e /tmp/probe-x && echo shared || echo private"),
        "private"
    );
    let status = w.main.sh(&format!("cat /proc/{pid}/status"));
    let value = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(value("NoNewPrivs:"), "1");
    assert_eq!(value("Seccomp:"), "2", "a system call filter is on");
    assert_eq!(value("CapEff:"), "0000000000000000", "no capabilities");
    assert_eq!(value("Uid:").split_whitespace().next(), Some(uid.as_str()));
}

#[test]
fn recorded_hostname_is_the_machines() {
    let Some((_turn, w)) = world() else { return };
    w.ensure_running();
    let pid = w.main_pid() as i32;
    let machine = w.main.sh("hostname");
    let client = w.db();
    let (recorded, _) = timed("check: daemon_instances.hostname", || {
        w.rt.block_on(temu_sync::testkit::eventually_some(SETTLE, || async {
            client
                .query_opt(
                    "SELECT hostname FROM daemon_instances WHERE pid = $1 ORDER BY started_at DESC LIMIT 1",
                    &[&pid],
                )
                .await
                .ok()
                .flatten()
                .map(|row| row.get::<_, String>(0))
        }))
    });
    let recorded = recorded.expect("the daemon recorded its instance");
    say(&format!(
        "hostname: machine {machine:?}, recorded {recorded:?}"
    ));
    assert_eq!(recorded, machine);
    assert_eq!(
        machine, w.main.name,
        "the container's own name, not the host's"
    );
}
