//! The Temu client against the simulator: signing, every error class, retries, limits, breaker,
//! proxy, token checks, and no secret in any log line.

mod calls;
mod errors;
mod limits;
mod proxy;
mod shops;

use temu_sync::temu::model::{every_fulfillment_type, OrderListRequest};

/// Page `n` of the order listing, 20 a page.
fn page(n: u32) -> OrderListRequest {
    OrderListRequest {
        page_number: n,
        page_size: 20,
        fulfillment_type_list: every_fulfillment_type(),
        ..Default::default()
    }
}
