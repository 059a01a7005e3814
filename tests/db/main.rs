//! The database side, against the real local PostgreSQL: the pool, the transaction helper and the
//! database actor (`pool`), TLS to the server (`tls`), server errors classified by SQLSTATE
//! (`classify`), a refused or missing database reported at once with its cause (`refused`), and
//! the real daemon binary through database outages at boot and at run time (`outages`). One test binary; each test has a database of its
//! own (and its own fault proxy and daemon on free ports), so they run in parallel.

mod classify;
mod outages;
mod pool;
mod refused;
mod tls;
