//! How the demo shows its progress: a live display on a terminal, plain lines otherwise.
//!
//! Owns: [`Screen`] — on a terminal (stderr is a tty) one `indicatif` display: a header line
//! (phase, streams done, ~records, time) and one bar per shop × stream (chunks done, records,
//! pages/s, ETA), with the daemon's log lines printed above it; without a terminal, one plain
//! line on stdout whenever the summary changes — and the demo's log filter (warnings only,
//! `-v` info, `-vv` debug; `RUST_LOG` wins). Must not: decide when the demo is done
//! (`super::watch`) or count anything itself (`super::tally`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use super::tally::{StreamTally, Tally};
use crate::config::{LogConfig, Stream};
use crate::sync::StreamView;

const HEADER: &str = "{spinner:.green} {msg:.bold}";
/// A stream walking a window in chunks: the bar is its chunks.
const CHUNKED: &str = "  {prefix:<22} [{bar:30.cyan/blue}] {msg}";
/// A full sweep (products) has no known length: a spinner in the bar's place.
const SWEEPING: &str = "  {prefix:<22} [{spinner:^30.cyan}] {msg}";

/// One sample of the demo, as the screen shows it.
pub struct Frame<'a> {
    /// `backfill` or `incremental round`.
    pub phase: &'static str,
    /// Streams done with the current phase, of `streams`.
    pub finished: usize,
    pub streams: usize,
    pub views: &'a [StreamView],
    /// Whether each view (same order) is done with the current phase.
    pub done: &'a [bool],
    pub tally: &'a Tally,
    pub elapsed: Duration,
}

impl Frame<'_> {
    /// The one-line summary: `backfill: 3/6 streams done, ~12345 records, 4.2 s`.
    pub fn summary(&self) -> String {
        format!(
            "{}: {}/{} streams done, ~{} records, {:.1} s",
            self.phase,
            self.finished,
            self.streams,
            self.tally.records(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Where the demo's progress goes.
pub enum Screen {
    /// Plain lines on stdout, one per change (no terminal: logs, CI, a pipe).
    Plain { last_line: String },
    /// The live display on stderr.
    Live(Box<LiveDisplay>),
}

impl Screen {
    /// [`Screen::Live`] when stderr is a terminal, else [`Screen::Plain`].
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Screen::Live(Box::new(LiveDisplay::new()))
        } else {
            Screen::Plain {
                last_line: String::new(),
            }
        }
    }

    /// How often the demo samples the board for this screen.
    pub fn refresh(&self) -> Duration {
        match self {
            Screen::Plain { .. } => Duration::from_millis(500),
            Screen::Live(_) => Duration::from_millis(200),
        }
    }

    /// Installs the demo's logger: the daemon's own log at `warn` (`-v`: `info`, `-vv`:
    /// `debug`; `RUST_LOG` wins). On a terminal its lines are printed above the live display;
    /// otherwise the daemon's usual logger is used with that level.
    pub fn init_logging(&self, log: &LogConfig, verbose: u8) -> Result<(), String> {
        let level = match verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        };
        match self {
            Screen::Plain { .. } => crate::telemetry::init(&LogConfig {
                format: log.format,
                level: level.to_string(),
            }),
            Screen::Live(live) => {
                let filter = match std::env::var("RUST_LOG") {
                    Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
                    _ => EnvFilter::try_new(level),
                }
                .map_err(|e| format!("RUST_LOG is not a valid filter: {e}"))?;
                let writer = AboveTheDisplay(live.multi.clone());
                tracing_subscriber::registry()
                    .with(filter)
                    .with(tracing_subscriber::fmt::layer().with_writer(writer))
                    .try_init()
                    .map_err(|e| format!("could not install the logger: {e}"))
            }
        }
    }

    /// Shows one sample.
    pub fn show(&mut self, frame: &Frame<'_>) {
        match self {
            Screen::Plain { last_line } => {
                let line = format!("demo: {}", frame.summary());
                if line != *last_line {
                    println!("{line}");
                    *last_line = line;
                }
            }
            Screen::Live(live) => live.show(frame),
        }
    }

    /// A line between phases (`backfill done in …`).
    pub fn note(&self, line: &str) {
        match self {
            Screen::Plain { .. } => println!("{line}"),
            Screen::Live(live) => {
                let _ = live.multi.println(line);
            }
        }
    }

    /// Leaves the live display drawn as it is, final; nothing to do for plain lines.
    pub fn finish(&self) {
        if let Screen::Live(live) = self {
            live.header.finish();
            for bar in live.bars.values() {
                bar.finish();
            }
        }
    }
}

/// The `indicatif` display: a header and one bar per shop × stream, added as streams appear.
pub struct LiveDisplay {
    multi: MultiProgress,
    header: ProgressBar,
    bars: BTreeMap<(String, Stream), ProgressBar>,
    chunked: ProgressStyle,
    sweeping: ProgressStyle,
}

impl LiveDisplay {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(style(HEADER));
        header.enable_steady_tick(Duration::from_millis(120));
        Self {
            multi,
            header,
            bars: BTreeMap::new(),
            chunked: style(CHUNKED).progress_chars("=> "),
            sweeping: style(SWEEPING),
        }
    }

    fn show(&mut self, frame: &Frame<'_>) {
        self.header.set_message(frame.summary());
        let now = Utc::now();
        for (view, &done) in frame.views.iter().zip(frame.done) {
            let key = (view.shop.clone(), view.stream);
            let tally = frame.tally.get(&view.shop, view.stream);
            let bar = self.bars.entry(key).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(1));
                bar.set_prefix(format!("{} {}", view.shop, view.stream.as_str()));
                bar.set_style(self.chunked.clone());
                bar
            });
            let chunks = view.progress.map(|p| (p.chunks_done, p.chunks_total));
            match chunks {
                Some((_, 0)) if !done => {
                    bar.set_style(self.sweeping.clone());
                    bar.tick();
                }
                Some((done_chunks, total)) if !done => {
                    bar.set_style(self.chunked.clone());
                    bar.set_length(total);
                    bar.set_position(done_chunks);
                }
                _ => {
                    bar.set_style(self.chunked.clone());
                    let full = if done { 1 } else { 0 };
                    bar.set_length(1);
                    bar.set_position(full);
                }
            }
            bar.set_message(bar_message(view, tally, done, now));
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants of this file; a bad one is a bug caught by the unit test.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A bar's text: `  3,012 records   12.4 pages/s   ETA 3s`, or `✓ up to date` once the stream
/// is done with the current phase.
fn bar_message(
    view: &StreamView,
    tally: Option<&StreamTally>,
    done: bool,
    now: DateTime<Utc>,
) -> String {
    let records = thousands(tally.map(StreamTally::records).unwrap_or(0));
    let rate = pages_per_second(view, now)
        .map(|r| format!("{r:>6.1} pages/s"))
        .unwrap_or_else(|| format!("{:>6} pages/s", "–"));
    if done {
        return format!("{records:>7} records  {rate}  ✓ up to date");
    }
    let eta = match view.eta_seconds {
        Some(s) => format!("ETA {s}s"),
        None if view.progress.is_some() => "ETA –".to_string(),
        None => format!("{:?}", view.state).to_lowercase(),
    };
    format!("{records:>7} records  {rate}  {eta}")
}

/// Pages per second of the run in progress, else of the last finished run.
fn pages_per_second(view: &StreamView, now: DateTime<Utc>) -> Option<f64> {
    if let (Some(p), Some(started)) = (view.progress, view.run_started_at) {
        let secs = (now - started).num_milliseconds() as f64 / 1000.0;
        return (secs > 0.0).then(|| p.pages as f64 / secs);
    }
    let last = view.last_run.as_ref()?;
    (last.duration_ms > 0).then(|| last.pages as f64 * 1000.0 / last.duration_ms as f64)
}

/// `12345` → `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A `tracing` writer that prints each log line above the live display (the display is
/// cleared, the line written, the display redrawn), so logs never tear the bars.
#[derive(Clone)]
struct AboveTheDisplay(MultiProgress);

impl<'a> MakeWriter<'a> for AboveTheDisplay {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            multi: self.0.clone(),
            buf: Vec::new(),
        }
    }
}

/// One event's text, written out when the formatter is done with it.
struct LogLine {
    multi: MultiProgress,
    buf: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.multi.suspend(|| {
                let _ = std::io::stderr().write_all(&buf);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_are_valid() {
        for t in [HEADER, CHUNKED, SWEEPING] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
