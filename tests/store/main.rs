//! The storage layer of the sync engine against the real local PostgreSQL (each test in a
//! database of its own): record conversion, idempotent upserts that never move back in time,
//! soft removal, leases and cursors, the run log, the status view, the schema file and the
//! migrations' `down.sql`.
//!
//! One binary, one module per concern: `conversion`, `orders`, `raw_json`, `products`,
//! `aftersales`, `leases` (and the cursor), `runs` (and the status view), `schema` (and the
//! migrations); `fixtures` holds the shared databases, records and read-backs.

mod aftersales;
mod conversion;
mod fixtures;
mod leases;
mod orders;
mod products;
mod raw_json;
mod runs;
mod schema;
mod upgrade;
