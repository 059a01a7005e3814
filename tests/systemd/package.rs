//! The package's own life cycle, in a container of its own (the shared one keeps its install):
//! `dpkg -i` creates the user and the config with the right owner and mode and leaves the unit
//! disabled; the shipped config (no shops) starts, passes `/health` and says "no shops
//! configured"; a re-install keeps an edited config; `dpkg --purge` removes the user, the config
//! and the state directory and leaves the database alone.

use temu_sync::testkit::{eventually, free_port, TestDatabase};

use super::container::Container;
use super::world::{say, timed, world, UNIT};

#[test]
fn package_installs_disabled_starts_with_no_shops_keeps_config_and_purges() {
    let Some((_turn, w)) = world() else { return };
    let name = format!("temu-sync-test-{}-package", std::process::id());
    let (c, _) = timed("package: boot a second container", || {
        Container::boot(&w.tree, &name, &w.shared)
    });
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    let db = TestDatabase::reserve("systemd_pkg").expect("database name");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        life_cycle(w, &c, &db);
    }));
    c.halt();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn life_cycle(w: &super::world::World, c: &Container, db: &TestDatabase) {
    timed("package: dpkg -i", || {
        c.sh(&format!("dpkg -i {}", w.deb_inside))
    });
    assert_eq!(
        c.sh("stat -c '%U:%G %a' /etc/temu-sync /etc/temu-sync/config.yaml"),
        "root:temu-sync 750\nroot:temu-sync 640"
    );
    assert_eq!(
        c.sh("getent passwd temu-sync | cut -d: -f6,7"),
        "/var/lib/temu-sync:/usr/sbin/nologin"
    );
    assert_eq!(
        c.sh(&format!("systemctl is-enabled {UNIT} || true")),
        "disabled"
    );
    assert!(c
        .sh(&format!("systemctl cat {UNIT}"))
        .contains("ExecStart=/usr/bin/temu-sync --config /etc/temu-sync/config.yaml run"));
    // The shipped config as it is; only where the database and the listener are, from the
    // environment (an operator would edit the file).
    let port = free_port();
    c.sh("mkdir -p /etc/systemd/system/temu-sync.service.d");
    c.write(
        "/etc/systemd/system/temu-sync.service.d/where.conf",
        &format!(
            "[Service]\nEnvironment=TEMU_SYNC__DATABASE__URL={}\nEnvironment=TEMU_SYNC__HTTP__LISTEN=127.0.0.1:{port}\n",
            db.url()
        ),
    );
    c.sh("systemctl daemon-reload");
    timed("package: systemctl start (no shops)", || {
        c.sh(&format!("systemctl start {UNIT}"))
    });
    let url = format!("http://127.0.0.1:{port}/health");
    let health = w.rt.block_on(temu_sync::testkit::eventually_some(
        super::SETTLE,
        || async {
            let r = w
                .http
                .get(&url)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == 200).then_some(())?;
            let body: serde_json::Value = r.json().await.ok()?;
            (body["status"] == "pass").then_some(body)
        },
    ));
    let health = health.expect("the shipped config passes /health");
    assert_eq!(
        health["notes"],
        serde_json::json!([temu_sync::app::NO_SHOPS]),
        "{health}"
    );
    // STATUS= follows within a second (it is compared with the report every second).
    let status_text = || c.sh(&format!("systemctl show {UNIT} -p StatusText --value"));
    let status = w.rt.block_on(temu_sync::testkit::eventually_some(
        super::SETTLE,
        || async {
            let line = status_text();
            line.starts_with("pass: ").then_some(line)
        },
    ));
    let status = status.unwrap_or_else(|| panic!("STATUS= never passed: {:?}", status_text()));
    say(&format!("package: no shops: STATUS={status:?}"));
    assert!(
        status.ends_with(&format!("; {}", temu_sync::app::NO_SHOPS)),
        "{status}"
    );

    // An edited config survives a re-install (an upgrade to the same version).
    c.sh("echo '# edited by the operator' >> /etc/temu-sync/config.yaml");
    c.sh(&format!("dpkg -i {}", w.deb_inside));
    assert!(c
        .sh("tail -n 1 /etc/temu-sync/config.yaml")
        .contains("edited by the operator"));
    assert_eq!(
        c.sh("stat -c '%U:%G %a' /etc/temu-sync/config.yaml"),
        "root:temu-sync 640"
    );
    assert_eq!(
        c.sh(&format!("systemctl is-active {UNIT} || true")),
        "active",
        "try-restart kept it running"
    );

    timed("package: dpkg --purge", || c.sh("dpkg --purge temu-sync"));
    assert_eq!(c.sh("getent passwd temu-sync || echo gone"), "gone");
    assert_eq!(c.sh("getent group temu-sync || echo gone"), "gone");
    assert_eq!(
        c.sh("ls -d /etc/temu-sync /var/lib/temu-sync 2>/dev/null || echo gone"),
        "gone"
    );
    assert_eq!(
        c.sh(&format!("systemctl is-active {UNIT} || true")),
        "inactive"
    );
    // The database is the seller's: still there, with what the daemon wrote.
    let kept = w.rt.block_on(eventually(super::SETTLE, || async {
        let Ok((client, conn)) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls).await
        else {
            return false;
        };
        tokio::spawn(conn);
        client
            .query_one("SELECT count(*) FROM daemon_instances", &[])
            .await
            .map(|row| row.get::<_, i64>(0) > 0)
            .unwrap_or(false)
    }));
    assert!(kept, "purge left the database and its rows");
}
