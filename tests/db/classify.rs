//! Database errors from the real server, classified by SQLSTATE: what parks a sync stream (the
//! server refusing the work: a missing privilege, a read-only database, a missing table) and what
//! is retried (a statement timeout), with the server's own message and what to do. The code decides,
//! never the message text: errors raised with a chosen SQLSTATE and foreign or misleading text
//! classify by the code.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use temu_sync::config::DatabaseConfig;
use temu_sync::db::{Database, DbError};
use temu_sync::sync::{FailureKind, SyncError};
use temu_sync::testkit::TestDatabase;

fn config(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        pool_size: 1,
        max_overflow: 1,
        pool_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
        ..DatabaseConfig::default()
    }
}

fn pool(url: String, tweak: impl FnOnce(&mut DatabaseConfig)) -> Database {
    let mut cfg = config(url);
    tweak(&mut cfg);
    let db = Database::new(cfg).expect("valid config");
    db.rebuild_pool();
    db
}

/// `sql` through the pool, in a transaction of its own: the error as the sync engine sees it.
async fn run(db: &Database, sql: impl Into<String>) -> Result<(), DbError> {
    let sql = sql.into();
    db.transaction::<_, DbError, _>("classify", Duration::from_secs(15), |conn| {
        Box::pin(async move {
            diesel::sql_query(sql).execute(conn).await?;
            Ok(())
        })
    })
    .await
}

/// The error of a statement the server answers with `sqlstate` and `text` (`RAISE … USING
/// ERRCODE`): a real server error whose words we choose.
async fn raised(db: &Database, sqlstate: &str, text: &str) -> DbError {
    let sql = format!("DO $$ BEGIN RAISE EXCEPTION '{text}' USING ERRCODE = '{sqlstate}'; END $$");
    run(db, sql).await.expect_err("raised")
}

/// `sql` on a plain tokio-postgres session to `url`: the server's own message and SQLSTATE.
async fn server_says(url: &str, sql: &str) -> (String, String) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("plain session");
    tokio::spawn(conn);
    let err = client
        .batch_execute(sql)
        .await
        .expect_err("the server refuses it");
    let db = err.as_db_error().expect("a server error");
    (db.message().to_string(), db.code().code().to_string())
}

async fn admin(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("admin session");
    tokio::spawn(conn);
    client.batch_execute(sql).await.expect("admin statement");
}

/// Asserts `err` parks a stream with `sqlstate`, the server's `message` and advice naming `hint`.
fn assert_parks(err: DbError, sqlstate: &str, message: &str, hint: &str) {
    assert_eq!(err.sqlstate(), Some(sqlstate), "{err:?}");
    assert!(!err.is_transient(), "{sqlstate} must not be retried: {err}");
    let sync = SyncError::Db(err);
    assert_eq!(sync.kind(), FailureKind::Park, "{sync}");
    assert_eq!(sync.class(), "database_fatal");
    let text = sync.to_string();
    eprintln!("parks: {text}");
    assert!(
        text.contains(message),
        "the server's message {message:?}: {text}"
    );
    assert!(text.contains(hint), "what to do ({hint}): {text}");
}

/// A login role that may read but not write, dropped at the end.
struct ReadOnlyRole {
    name: String,
    admin_url: String,
}

impl ReadOnlyRole {
    async fn create(test_db: &TestDatabase) -> Self {
        let name = TestDatabase::unique_name("reader");
        let admin_url = test_db.url();
        admin(
            &admin_url,
            &format!(
                "CREATE ROLE \"{name}\" LOGIN; GRANT USAGE ON SCHEMA public TO \"{name}\"; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{name}\";"
            ),
        )
        .await;
        Self { name, admin_url }
    }

    fn url(&self, test_db: &TestDatabase) -> String {
        let addr = test_db.server_addr();
        format!(
            "postgres://{}@{}:{}/{}",
            self.name,
            addr.ip(),
            addr.port(),
            test_db.name()
        )
    }

    async fn drop_now(self) {
        admin(
            &self.admin_url,
            &format!("DROP OWNED BY \"{0}\"; DROP ROLE \"{0}\";", self.name),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_privilege_parks_with_the_servers_message() {
    let test_db = TestDatabase::create("classify_privilege").await.unwrap();
    admin(&test_db.url(), "CREATE TABLE orders_probe (id int)").await;
    let role = ReadOnlyRole::create(&test_db).await;
    let url = role.url(&test_db);
    let insert = "INSERT INTO orders_probe VALUES (1)";
    let (message, code) = server_says(&url, insert).await;
    assert_eq!(code, "42501");

    let db = pool(url, |_| {});
    run(&db, "SELECT count(*) FROM orders_probe")
        .await
        .expect("reading is allowed");
    let err = run(&db, insert).await.expect_err("writing is not");
    assert_parks(err, "42501", &message, "GRANT");
    db.close();
    role.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_and_a_missing_table_park() {
    let test_db = TestDatabase::create("classify_read_only").await.unwrap();
    admin(&test_db.url(), "CREATE TABLE orders_probe (id int)").await;

    let db = pool(test_db.url(), |_| {});
    let missing = "SELECT * FROM no_such_table";
    let (message, code) = server_says(&test_db.url(), missing).await;
    assert_eq!(code, "42P01");
    let err = run(&db, missing).await.expect_err("no such table");
    assert_parks(err, "42P01", &message, "temu-sync migrate");

    let missing_column = "SELECT no_such_column FROM orders_probe";
    let (message, _) = server_says(&test_db.url(), missing_column).await;
    let err = run(&db, missing_column).await.expect_err("no such column");
    assert_parks(err, "42703", &message, "temu-sync migrate");
    db.close();

    admin(
        &test_db.url(),
        &format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            test_db.name()
        ),
    )
    .await;
    let insert = "INSERT INTO orders_probe VALUES (1)";
    let (message, code) = server_says(&test_db.url(), insert).await;
    assert_eq!(code, "25006");
    let db = pool(test_db.url(), |_| {});
    let err = run(&db, insert).await.expect_err("read-only");
    assert_parks(err, "25006", &message, "read-only");
    db.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_is_retried() {
    let test_db = TestDatabase::create("classify_timeout").await.unwrap();
    let db = pool(test_db.url(), |c| {
        c.statement_timeout = Duration::from_millis(200)
    });
    let err = run(&db, "SELECT pg_sleep(5)")
        .await
        .expect_err("cancelled by the server");
    assert!(
        matches!(err, DbError::StatementTimeout(ref text) if text.contains("57014")),
        "{err:?}"
    );
    assert!(err.is_transient());
    let sync = SyncError::Db(err);
    assert_eq!(sync.kind(), FailureKind::Retry);
    assert_eq!(sync.class(), "database");
}

/// The server sends the SQLSTATE and a message of our choosing: the code decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlstate_decides_not_the_message_text() {
    let test_db = TestDatabase::create("classify_text").await.unwrap();
    let db = pool(test_db.url(), |_| {});

    // A statement timeout worded in German (as a server with lc_messages = 'de_DE' words it).
    let err = raised(
        &db,
        "57014",
        "storniere Anfrage wegen Zeitüberschreitung der Anweisung",
    )
    .await;
    assert!(matches!(err, DbError::StatementTimeout(_)), "{err:?}");
    assert_eq!(SyncError::Db(err).kind(), FailureKind::Retry);

    // The English words of a statement timeout, sent with the code of a missing privilege; disk
    // full, whatever the words.
    for (code, text, hint) in [
        (
            "42501",
            "canceling statement due to statement timeout",
            "GRANT",
        ),
        ("53100", "kein Platz mehr auf dem Gerät", "disk is full"),
    ] {
        assert_parks(raised(&db, code, text).await, code, text, hint);
    }

    // A deadlock in French is retried.
    let err = raised(&db, "40P01", "interblocage détecté").await;
    assert_eq!(err.sqlstate(), Some("40P01"));
    assert!(err.is_transient());
    assert_eq!(SyncError::Db(err).kind(), FailureKind::Retry);
}

/// When the machine has a second locale for the server's messages, a real statement timeout in
/// that language classifies the same. (Skipped, saying so, when no such locale is installed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_in_another_language_is_retried() {
    let test_db = TestDatabase::create("classify_locale").await.unwrap();
    let (client, conn) = tokio_postgres::connect(&test_db.url(), tokio_postgres::NoTls)
        .await
        .expect("admin session");
    tokio::spawn(conn);
    let mut chosen = None;
    for locale in [
        "de_DE.UTF-8",
        "de_DE.utf8",
        "fr_FR.UTF-8",
        "fr_FR.utf8",
        "es_ES.UTF-8",
    ] {
        if client
            .batch_execute(&format!("SET lc_messages = '{locale}'"))
            .await
            .is_ok()
        {
            chosen = Some(locale);
            break;
        }
    }
    let Some(locale) = chosen else {
        eprintln!("SKIP: no second locale installed for lc_messages; the SQLSTATE path is proven by the_sqlstate_decides_not_the_message_text");
        return;
    };
    let db = pool(test_db.url(), |c| {
        c.statement_timeout = Duration::from_millis(200)
    });
    let sql = format!("SET lc_messages = '{locale}'; SELECT pg_sleep(5)");
    let err = db
        .transaction::<_, DbError, _>("locale", Duration::from_secs(15), |conn| {
            Box::pin(async move {
                diesel_async::SimpleAsyncConnection::batch_execute(conn, &sql).await?;
                Ok(())
            })
        })
        .await
        .expect_err("cancelled");
    assert!(
        matches!(err, DbError::StatementTimeout(_)),
        "{locale}: {err:?}"
    );
}
