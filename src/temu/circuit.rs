//! A circuit breaker per router (region or base URL).
//!
//! Owns: the closed → open → half-open cycle. After `threshold` consecutive transport failures
//! (connect/read errors, timeouts, resets, HTTP 5xx) calls fail fast for `cool_off`; then exactly
//! one probe goes through; its success closes the circuit, its failure opens it again.
//! Must not: sleep or await — every method takes a short lock and returns.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive_failures: u32,
    opened_total: u64,
    last_change: Instant,
}

/// One router's breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    target: String,
    threshold: u32,
    cool_off: Duration,
    inner: Mutex<Inner>,
}

/// Where a breaker stands; shown as `closed`, `open` or `half-open`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    Closed,
    /// Failing fast until the next probe.
    Open,
    /// One probe is allowed through.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

/// What `/health` shows about a breaker.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CircuitSnapshot {
    pub target: String,
    pub state: CircuitState,
    pub consecutive_failures: u32,
    /// Times the circuit opened since start.
    pub opened_total: u64,
    /// Milliseconds until the next probe while open.
    pub retry_in_ms: Option<u64>,
}

/// Permission to send one request. Dropping it without [`Permit::success`] or [`Permit::failure`]
/// (a cancelled call) releases a half-open probe slot without judging the router.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    pub fn success(mut self) -> bool {
        self.settled = true;
        self.breaker.record(true)
    }
    pub fn failure(mut self) -> bool {
        self.settled = true;
        self.breaker.record(false)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            let mut inner = self.breaker.inner.lock();
            if let State::HalfOpen { .. } = inner.state {
                inner.state = State::HalfOpen { probing: false };
            }
        }
    }
}

impl CircuitBreaker {
    pub fn new(target: impl Into<String>, threshold: u32, cool_off: Duration) -> Self {
        Self {
            target: target.into(),
            threshold: threshold.max(1),
            cool_off,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                opened_total: 0,
                last_change: Instant::now(),
            }),
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// A permit to send, or the time left before the next probe.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Duration> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        match inner.state {
            State::Closed => Ok(self.permit(false)),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                inner.state = State::HalfOpen { probing: true };
                inner.last_change = now;
                Ok(self.permit(true))
            }
            // One probe at a time; the others fail fast for a short while.
            State::HalfOpen { probing: true } => Err(Duration::from_millis(100).min(self.cool_off)),
        }
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            settled: false,
        }
    }

    /// Records an outcome; returns `true` when the state changed.
    fn record(&self, ok: bool) -> bool {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let before = inner.state;
        if ok {
            inner.consecutive_failures = 0;
            inner.state = State::Closed;
        } else {
            inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
            let reopen = matches!(inner.state, State::HalfOpen { .. })
                || (inner.state == State::Closed && inner.consecutive_failures >= self.threshold);
            if reopen {
                inner.state = State::Open {
                    until: now + self.cool_off,
                };
                inner.opened_total += 1;
            }
        }
        let changed = std::mem::discriminant(&before) != std::mem::discriminant(&inner.state);
        if changed {
            inner.last_change = now;
        }
        changed
    }

    pub fn snapshot(&self) -> CircuitSnapshot {
        let now = Instant::now();
        let inner = self.inner.lock();
        let (state, retry_in_ms) = match inner.state {
            State::Closed => (CircuitState::Closed, None),
            State::Open { until } => (
                CircuitState::Open,
                Some(until.saturating_duration_since(now).as_millis() as u64),
            ),
            State::HalfOpen { .. } => (CircuitState::HalfOpen, None),
        };
        CircuitSnapshot {
            target: self.target.clone(),
            state,
            consecutive_failures: inner.consecutive_failures,
            opened_total: inner.opened_total,
            retry_in_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let cb = CircuitBreaker::new("t", 2, Duration::from_millis(30));
        cb.try_acquire().unwrap().failure();
        assert_eq!(cb.snapshot().state, CircuitState::Closed);
        cb.try_acquire().unwrap().failure();
        assert_eq!(cb.snapshot().state, CircuitState::Open);
        assert!(cb.try_acquire().is_err());
        std::thread::sleep(Duration::from_millis(40));
        let probe = cb.try_acquire().unwrap();
        assert!(cb.try_acquire().is_err(), "only one probe");
        probe.failure();
        assert_eq!(cb.snapshot().state, CircuitState::Open);
        std::thread::sleep(Duration::from_millis(40));
        let probe = cb.try_acquire().unwrap();
        drop(probe); // cancelled probe frees the slot
        cb.try_acquire().unwrap().success();
        assert_eq!(cb.snapshot().state, CircuitState::Closed);
        assert_eq!(cb.snapshot().opened_total, 2);
    }
}
