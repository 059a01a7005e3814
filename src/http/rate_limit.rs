//! Per-client rate limit of the HTTP endpoint (a governor keyed GCRA limiter).
//!
//! Owns: the limiter keyed by client address, the mapping of an address to its key (an IPv4
//! address; an IPv6 address by its /64 prefix, since one host usually owns a whole /64), and the
//! periodic pruning that keeps the key store bounded.
//!
//! Must not: decide which routes are limited (the router's [`super::router::RateLimit`] does), or
//! look at forwarded-for headers: behind a reverse proxy every request comes from the proxy's address
//! and shares one budget, which is the safe failure (no client can spoof another's key).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How often keys whose bucket has refilled are dropped from the store.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// The per-client limiter.
pub struct ClientRateLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl ClientRateLimiter {
    /// `per_second` requests per second with bursts of `burst` (the bucket size). `per_second == 0`
    /// disables the limit (returns `None`); `burst == 0` means a burst of `per_second`.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::keyed(quota),
        })
    }

    /// Takes one request from `ip`'s budget; `Err(wait)` when it is spent.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&client_key(ip))
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Drops the keys whose budget is full again (indistinguishable from a new client).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys in the store right now (approximate).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// The rate-limit key of a client address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn burst_then_limited_per_client() {
        let limiter = ClientRateLimiter::new(1, 2).expect("enabled");
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        let wait = limiter.check(a).expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check(b).is_ok(), "other clients keep their budget");
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn zero_rate_disables() {
        assert!(ClientRateLimiter::new(0, 10).is_none());
        assert!(ClientRateLimiter::new(5, 0).is_some());
    }

    #[test]
    fn ipv6_keys_by_prefix() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(one), client_key(two));
        assert_ne!(client_key(one), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(client_key(mapped), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    }

    #[test]
    fn prune_drops_refilled_keys() {
        let limiter = ClientRateLimiter::new(1000, 1).expect("enabled");
        for i in 0..50u8 {
            let _ = limiter.check(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)));
        }
        assert_eq!(limiter.len(), 50);
        std::thread::sleep(Duration::from_millis(20));
        limiter.prune();
        assert!(limiter.is_empty(), "{} keys left", limiter.len());
    }
}
