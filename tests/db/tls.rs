//! TLS to PostgreSQL (`src/db/tls.rs`) against the local server, which Debian's package sets up
//! with `ssl = on` and a self-signed "snakeoil" certificate for the host's name: with
//! `sslmode=require` the session is encrypted and the certificate is verified — an unknown issuer
//! or a host name the certificate does not name is refused, never downgraded to plain TCP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use temu_sync::config::{Config, DatabaseConfig};
use temu_sync::db::{Database, DbError};
use temu_sync::testkit::TestDatabase;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
/// A self-signed CA that signed nothing the server has.
const UNRELATED_CA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/unrelated-ca.pem"
);

/// The host name the local server's certificate is for: `localhost` where the package was
/// installed with that host name, the machine's name otherwise.
fn certificate_name() -> String {
    use x509_cert::der::DecodePem;
    let pem = std::fs::read(SNAKEOIL).expect("read the server certificate");
    let cert = x509_cert::Certificate::from_pem(&pem).expect("a PEM certificate");
    let subject = cert.tbs_certificate.subject.to_string();
    subject
        .split(',')
        .find_map(|rdn| rdn.trim().strip_prefix("CN="))
        .unwrap_or("localhost")
        .to_string()
}

/// `sslmode=require` to the test database, TCP to 127.0.0.1, the certificate checked for `host`.
fn tls_config(db: &TestDatabase, host: &str, ca_file: Option<&str>) -> DatabaseConfig {
    let port = db.server_addr().port();
    DatabaseConfig {
        url: format!(
            "postgres://postgres@{host}:{port}/{}?sslmode=require&hostaddr=127.0.0.1",
            db.name()
        ),
        tls_ca_file: ca_file.map(PathBuf::from),
        connect_timeout: Duration::from_secs(5),
        pool_size: 1,
        max_overflow: 1,
        ..DatabaseConfig::default()
    }
}

/// A fresh test database, when the local server offers TLS with the snakeoil certificate
/// (Debian's default); the tests below need it and say so when it is missing.
async fn tls_test_database(prefix: &str) -> Option<TestDatabase> {
    let db = TestDatabase::create(prefix).await.expect("test database");
    server_offers_tls(&db).await.then_some(db)
}

async fn server_offers_tls(db: &TestDatabase) -> bool {
    if !Path::new(SNAKEOIL).is_file() {
        eprintln!("SKIP: {SNAKEOIL} is missing (not Debian's postgresql package?)");
        return false;
    }
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .expect("plain connection to the test database");
    tokio::spawn(conn);
    let ssl: String = client
        .query_one("SHOW ssl", &[])
        .await
        .expect("SHOW ssl")
        .get(0);
    if ssl != "on" {
        eprintln!("SKIP: the local PostgreSQL has ssl = {ssl}");
    }
    ssl == "on"
}

#[derive(diesel::QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_with_the_servers_ca_gives_an_encrypted_session() {
    let Some(test_db) = tls_test_database("db_tls_ok").await else {
        return;
    };
    let name = certificate_name();
    let db = Database::new(tls_config(&test_db, &name, Some(SNAKEOIL))).expect("config");
    assert!(db.connector().uses_tls());
    db.rebuild_pool();
    let mut conn = db.checkout("test").await.expect("TLS connection");
    let row: Encrypted =
        diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(&mut *conn)
            .await
            .expect("pg_stat_ssl");
    assert!(row.ssl, "the session must be encrypted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_certificate_is_refused_not_downgraded() {
    let Some(test_db) = tls_test_database("db_tls_refused").await else {
        return;
    };
    let name = certificate_name();
    let cases = [
        // Roots from tls_ca_file only: a CA that did not sign the server's certificate.
        (name.as_str(), UNRELATED_CA, "UnknownIssuer"),
        // Trusted issuer, but the certificate is for another name than the one asked for.
        ("db.example.test", SNAKEOIL, "not valid for name"),
    ];
    for (host, ca, why) in cases {
        let db = Database::new(tls_config(&test_db, host, Some(ca))).expect("config");
        let err = match db.connector().connect().await {
            Ok(_) => panic!("{host} with {ca}: connected although the certificate fails ({why})"),
            Err(e) => e.to_string(),
        };
        eprintln!("refused as expected: {err}");
        assert!(
            err.contains("certificate") && err.contains(why),
            "names the certificate problem ({why}): {err}"
        );
    }
}

#[test]
fn a_ca_file_that_holds_no_certificate_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let cfg = DatabaseConfig {
        url: "postgres://postgres@localhost:5432/x?sslmode=require".into(),
        tls_ca_file: Some(not_pem.clone()),
        ..DatabaseConfig::default()
    };
    match Database::new(cfg) {
        Err(DbError::Config(message)) => {
            assert!(
                message.contains("database.tls_ca_file") && message.contains("no certificate"),
                "{message}"
            );
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn a_ca_file_without_sslmode_require_is_rejected_with_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").expect("write");
    let yaml = format!(
        "database:\n  url: postgres://postgres@db.internal:5432/temu\n  tls_ca_file: {}\n",
        ca.display()
    );
    let err = Config::from_yaml_str(&yaml, "config.yaml", &|_| None, Vec::new())
        .expect_err("must be rejected")
        .to_string();
    assert!(
        err.contains("database.tls_ca_file") && err.contains("sslmode=require"),
        "{err}"
    );
    let yaml = "database:\n  url: postgres://postgres@db.internal:5432/temu?sslmode=require\n  \
                tls_ca_file: /nonexistent/ca.pem\n";
    let err = Config::from_yaml_str(yaml, "config.yaml", &|_| None, Vec::new())
        .expect_err("must be rejected")
        .to_string();
    assert!(
        err.contains("database.tls_ca_file") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
}
