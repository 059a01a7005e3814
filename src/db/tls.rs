//! TLS to PostgreSQL.
//!
//! Owns: deciding whether connections use TLS and building the verifier. TLS is used when
//! `database.url` says `sslmode=require`; then the server's certificate is always verified — chain
//! to a trusted root and the host name of the URL — so a password is never sent to a server that
//! merely claims to be the database. The roots are the PEM certificates of `database.tls_ca_file`
//! when it is set (like libpq's `sslrootcert`: a managed database's own CA, nothing else), else the
//! system's store. `sslmode=disable` and `prefer` (tokio-postgres's default) connect in plain TCP, as
//! before: local and tunnelled setups need nothing new.
//!
//! Must not: fall back to plain TCP when TLS was asked for, or accept an unverified certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS connector for `pg`, or `None` when the URL does not ask for TLS.
pub fn connector(
    pg: &tokio_postgres::Config,
    ca_file: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, String> {
    if pg.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in ca_certificates(path)? {
                roots.add(cert).map_err(|e| {
                    format!(
                        "database.tls_ca_file {}: a certificate is not usable as a root: {e}",
                        path.display()
                    )
                })?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    if roots.is_empty() {
        return Err(
            "database.url asks for TLS (sslmode=require) but no trusted root certificate was \
             found: install the system CA bundle (ca-certificates) or set database.tls_ca_file"
                .to_string(),
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The PEM certificates of `path`; at least one.
pub fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("database.tls_ca_file {shown}: cannot read it: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("database.tls_ca_file {shown}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "database.tls_ca_file {shown}: no certificate in it (expected PEM \
             \"-----BEGIN CERTIFICATE-----\" blocks)"
        ));
    }
    Ok(certs)
}
