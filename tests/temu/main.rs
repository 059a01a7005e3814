//! The Temu client and the simulator against each other: signing, the envelope and every error
//! class, retries, QPS, connection cap, breakers, proxies, token checks, redaction (`client`);
//! the simulator's contract and the Temu actor on the one client (`sim`); the API contract:
//! recorded-shape fixtures against our decoders and the simulator (`contract`).

mod client;
mod contract;
// Shared with the `/metrics` tests (tests/ops), so it stays beside the folders.
#[path = "../temu_common/mod.rs"]
mod common;
mod sim;
