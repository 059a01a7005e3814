//! A token bucket whose rate can be changed while callers wait on it.
//!
//! `rate` tokens a second, at most `capacity = min(burst, max(rate, 1))` stored (so the sum of the
//! capacities of n daemons sharing one app_key never exceeds the app's `qps`). A rate of 0 means
//! "no budget yet" (a daemon that has not joined): callers wait until the rate is raised.
//! [`Bucket::until_ready`] holds no lock across an await, so dropping it (the caller's deadline or
//! cancellation) is always safe and takes no token.

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

/// The longest single sleep of a waiter at rate 0, before it looks again.
const IDLE_RECHECK: Duration = Duration::from_millis(250);

/// A token bucket with a settable rate.
pub struct Bucket {
    state: Mutex<State>,
    burst: f64,
    changed: Notify,
}

struct State {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl State {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }
}

fn capacity(rate: f64, burst: f64) -> f64 {
    burst.min(rate.max(1.0))
}

impl Bucket {
    /// A bucket of `rate` tokens a second, full, storing at most `burst` (at least 1).
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        let rate = rate.max(0.0);
        let cap = capacity(rate, burst);
        Self {
            state: Mutex::new(State {
                rate,
                capacity: cap,
                tokens: if rate > 0.0 { cap } else { 0.0 },
                last: Instant::now(),
            }),
            burst,
            changed: Notify::new(),
        }
    }

    /// The current rate, tokens a second.
    pub fn rate(&self) -> f64 {
        self.state.lock().rate
    }

    /// Sets the rate from now on. Tokens earned so far are kept at the old rate, then cut to the
    /// new capacity (a lower rate never leaves a burst from the higher one behind); waiters
    /// look again at once.
    pub fn set_rate(&self, rate: f64) {
        let rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
        {
            let mut s = self.state.lock();
            s.refill(Instant::now());
            s.rate = rate;
            s.capacity = capacity(rate, self.burst);
            s.tokens = s.tokens.min(s.capacity);
        }
        self.changed.notify_waiters();
    }

    /// Takes a token if one is there, else says how long until one will be.
    fn try_take(&self) -> Result<(), Duration> {
        let mut s = self.state.lock();
        s.refill(Instant::now());
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return Ok(());
        }
        if s.rate <= 0.0 {
            return Err(IDLE_RECHECK);
        }
        Err(Duration::from_secs_f64((1.0 - s.tokens) / s.rate).max(Duration::from_micros(100)))
    }

    /// Waits for a token and takes it. Cancel-safe: wrap it in the caller's deadline.
    pub async fn until_ready(&self) {
        loop {
            let changed = self.changed.notified();
            match self.try_take() {
                Ok(()) => return,
                Err(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = changed => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Tokens taken by `waiters` concurrent callers within `window`.
    async fn taken_within(bucket: Arc<Bucket>, waiters: usize, window: Duration) -> usize {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..waiters {
            let (b, c) = (bucket.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    b.until_ready().await;
                    c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }));
        }
        tokio::time::sleep(window).await;
        for t in tasks {
            t.abort();
        }
        count.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_the_rate_plus_one_burst() {
        let b = Arc::new(Bucket::new(10.0, 1));
        // 1 stored token + 10/s over 10 s (the boundary token may or may not land).
        let n = taken_within(b, 4, Duration::from_millis(10_000)).await;
        assert!((100..=101).contains(&n), "took {n}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_applies_to_waiters_at_once() {
        let b = Arc::new(Bucket::new(0.0, 5));
        assert_eq!(taken_within(b.clone(), 2, Duration::from_secs(3)).await, 0);
        b.set_rate(4.0);
        // From an empty bucket: one token every 250 ms (the last one on the boundary).
        let n = taken_within(b.clone(), 2, Duration::from_secs(5)).await;
        assert!((19..=20).contains(&n), "took {n}");
        b.set_rate(1.0);
        let n = taken_within(b, 2, Duration::from_secs(5)).await;
        assert!((4..=6).contains(&n), "took {n} after lowering the rate");
    }

    #[tokio::test(start_paused = true)]
    async fn lowering_the_rate_cuts_the_stored_burst() {
        let b = Arc::new(Bucket::new(20.0, 20));
        tokio::time::sleep(Duration::from_secs(2)).await;
        b.set_rate(2.0);
        // Capacity is now 2: at most 2 at once, then 2/s.
        let n = taken_within(b, 3, Duration::from_millis(999)).await;
        assert!(n <= 4, "took {n}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_takes_no_token() {
        let b = Arc::new(Bucket::new(1.0, 1));
        b.until_ready().await;
        let r = tokio::time::timeout(Duration::from_millis(100), b.until_ready()).await;
        assert!(r.is_err());
        tokio::time::sleep(Duration::from_millis(900)).await;
        let r = tokio::time::timeout(Duration::from_millis(1), b.until_ready()).await;
        assert!(r.is_ok(), "the token earned by 1 s is still there");
    }
}
