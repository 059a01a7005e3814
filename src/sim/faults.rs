//! Faults the simulator injects: latency, API errors, HTTP errors, resets, stalls, bad bodies.
//!
//! Owns: the fault configuration (rates per request, a latency distribution) and a script of
//! forced faults for the next requests (deterministic tests). Must not: know about the data.

use std::collections::VecDeque;
use std::time::Duration;

/// How long the simulator waits before answering.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    None,
    Fixed(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// Exponential with this mean, capped at `max`.
    Exponential {
        mean: Duration,
        max: Duration,
    },
}

impl Latency {
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Duration {
        match *self {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                if max <= min {
                    min
                } else {
                    min + (max - min).mul_f64(rng.f64())
                }
            }
            Latency::Exponential { mean, max } => {
                let u = rng.f64().max(1e-12);
                mean.mul_f64(-u.ln()).min(max)
            }
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// `success:false` with this code (e.g. 4000000, 3000011).
    ApiError(i64),
    /// An HTTP status with an HTML body (502, 503, …).
    Http(u16),
    /// HTTP 429 with `Retry-After` in whole seconds.
    TooManyRequests { retry_after_secs: u64 },
    /// The TCP connection is reset (RST) instead of answering.
    Reset,
    /// The answer is delayed by this long (past the client's read timeout).
    Stall(Duration),
    /// The JSON body is cut in half (valid HTTP, invalid JSON).
    Truncated,
    /// A 200 response whose body is not JSON.
    Malformed,
}

/// Rates (probability per request, 0..=1) of each fault, and the latency distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    pub latency: Latency,
    pub system_error: f64,
    pub http_502: f64,
    pub http_503: f64,
    pub http_429: f64,
    pub retry_after_secs: u64,
    pub reset: f64,
    pub stall: f64,
    pub stall_for: Duration,
    pub truncated: f64,
    pub malformed: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency: Latency::None,
            system_error: 0.0,
            http_502: 0.0,
            http_503: 0.0,
            http_429: 0.0,
            retry_after_secs: 1,
            reset: 0.0,
            stall: 0.0,
            stall_for: Duration::from_secs(60),
            truncated: 0.0,
            malformed: 0.0,
        }
    }
}

impl FaultConfig {
    /// No faults, no latency.
    pub fn none() -> Self {
        Self::default()
    }

    /// Picks the fault (if any) for one request.
    pub fn roll(&self, rng: &mut fastrand::Rng) -> Option<Fault> {
        let table = [
            (self.system_error, Fault::ApiError(4_000_000)),
            (self.http_502, Fault::Http(502)),
            (self.http_503, Fault::Http(503)),
            (
                self.http_429,
                Fault::TooManyRequests {
                    retry_after_secs: self.retry_after_secs,
                },
            ),
            (self.reset, Fault::Reset),
            (self.stall, Fault::Stall(self.stall_for)),
            (self.truncated, Fault::Truncated),
            (self.malformed, Fault::Malformed),
        ];
        let mut x = rng.f64();
        for (rate, fault) in table {
            let rate = rate.clamp(0.0, 1.0);
            if x < rate {
                return Some(fault);
            }
            x -= rate;
        }
        None
    }
}

/// The live fault state: configuration plus scripted faults for the next requests.
#[derive(Debug)]
pub struct FaultState {
    pub config: FaultConfig,
    pub script: VecDeque<Fault>,
    pub rng: fastrand::Rng,
}

impl FaultState {
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Self {
            config,
            script: VecDeque::new(),
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed_fa17),
        }
    }

    /// The fault and latency for the next request.
    pub fn draw(&mut self) -> (Option<Fault>, Duration) {
        let latency = self.config.latency.sample(&mut self.rng);
        let fault = match self.script.pop_front() {
            Some(f) => Some(f),
            None => self.config.roll(&mut self.rng),
        };
        (fault, latency)
    }
}
