//! The runtime fault control of a server process: a small text file, named by the
//! environment variable [`CONTROL_ENV`], that a test harness rewrites while the process
//! runs and the process polls every [`POLL`].
//!
//! Format: one setting per line, `name value`; blank lines and lines starting with `#`
//! are ignored. A missing file means every default.
//!
//! ```text
//! clock-rate 1.004      # the injectable Clock runs at 1.004x real time from now on
//! fsync-delay-ms 300    # every file and directory sync sleeps 300 ms first
//! ```
//!
//! | name | value | default | used by |
//! |---|---|---|---|
//! | `clock-rate` | finite float in [0.5, 2] | 1 | `lockservice::clock::clock_from_env` |
//! | `fsync-delay-ms` | integer ms ≤ 60000 | 0 | [`super::process::SyncHookFs::slowed_by`] |
//!
//! The harness should replace the file atomically (write a temporary file, rename it).
//! A line the poller cannot parse is reported on stderr (naming the file, the line and
//! what was wrong) and the setting keeps its previous value; the process keeps running,
//! since it cannot answer its harness any other way.
//!
//! Each change is reported on stderr as `fault control FILE: clock-rate R fsync-delay-ms D`.
//!
//! The settings are process-global: [`Control::global`] starts one poller thread the first
//! time it is asked, and only when the variable is set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// The environment variable naming the control file.
pub const CONTROL_ENV: &str = "QUARRY_FAULT_CONTROL";
/// How often the file is read.
pub const POLL: Duration = Duration::from_millis(50);
/// Accepted clock rates (a rate far from 1 is a harness bug, not a test).
const RATE_RANGE: std::ops::RangeInclusive<f64> = 0.5..=2.0;
/// Longest accepted fsync delay.
const MAX_DELAY_MS: u64 = 60_000;

/// A clock-rate change: the rate and the instant the poller saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateChange {
    /// Incremented by every change (0: never changed).
    pub generation: u64,
    /// Rate relative to the monotonic clock.
    pub rate: f64,
    /// When the change was seen.
    pub at: Instant,
}

/// Parsed settings of one version of the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// `clock-rate`.
    pub clock_rate: f64,
    /// `fsync-delay-ms`.
    pub fsync_delay_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            clock_rate: 1.0,
            fsync_delay_ms: 0,
        }
    }
}

impl Settings {
    /// Parses the file's text; `file` names it in errors. Settings absent from the text
    /// keep their defaults.
    pub fn parse(file: &Path, text: &str) -> Result<Settings> {
        let mut s = Settings::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| {
                Error::InvalidArgument(format!(
                    "{} line {}: {what}: {raw:?}",
                    file.display(),
                    i + 1
                ))
            };
            let mut words = line.split_whitespace();
            let (Some(name), Some(value), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad("expected `name value`"));
            };
            match name {
                "clock-rate" => {
                    let r: f64 = value.parse().map_err(|_| bad("not a number"))?;
                    if !RATE_RANGE.contains(&r) {
                        return Err(bad("clock-rate must be within [0.5, 2]"));
                    }
                    s.clock_rate = r;
                }
                "fsync-delay-ms" => {
                    let d: u64 = value.parse().map_err(|_| bad("not a whole number"))?;
                    if d > MAX_DELAY_MS {
                        return Err(bad("fsync-delay-ms must be at most 60000"));
                    }
                    s.fsync_delay_ms = d;
                }
                _ => return Err(bad("unknown setting (clock-rate, fsync-delay-ms)")),
            }
        }
        Ok(s)
    }
}

/// The live settings of this process.
pub struct Control {
    path: PathBuf,
    fsync_delay_ms: AtomicU64,
    rate: Mutex<RateChange>,
    /// The settings applied last (a change is reported on stderr).
    last: Mutex<Settings>,
}

static GLOBAL: OnceLock<Option<Arc<Control>>> = OnceLock::new();

impl Control {
    /// Settings read from `path` now (defaults when it is missing or bad), not polled.
    pub fn new(path: &Path) -> Control {
        let c = Control {
            path: path.to_owned(),
            fsync_delay_ms: AtomicU64::new(0),
            rate: Mutex::new(RateChange {
                generation: 0,
                rate: 1.0,
                at: Instant::now(),
            }),
            last: Mutex::new(Settings::default()),
        };
        c.poll_once();
        c
    }

    /// The process's control, polled by a background thread, when [`CONTROL_ENV`] is set.
    pub fn global() -> Option<Arc<Control>> {
        GLOBAL
            .get_or_init(|| {
                let path = std::env::var_os(CONTROL_ENV)?;
                let c = Arc::new(Control::new(Path::new(&path)));
                let poller = Arc::clone(&c);
                std::thread::Builder::new()
                    .name("fault-control".into())
                    .spawn(move || loop {
                        std::thread::sleep(POLL);
                        poller.poll_once();
                    })
                    .expect("spawning the fault-control thread");
                Some(c)
            })
            .clone()
    }

    /// Reads the file once and applies it.
    pub fn poll_once(&self) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                eprintln!("fault control: cannot read {}: {e}", self.path.display());
                return;
            }
        };
        match Settings::parse(&self.path, &text) {
            Ok(s) => self.apply(s),
            Err(e) => eprintln!("fault control: {e}; keeping the previous settings"),
        }
    }

    /// Makes `s` the live settings; a change is reported on stderr (the process's log),
    /// so a harness can see that its setting arrived.
    pub fn apply(&self, s: Settings) {
        {
            let mut last = self.last.lock();
            if *last != s {
                eprintln!(
                    "fault control {}: clock-rate {} fsync-delay-ms {}",
                    self.path.display(),
                    s.clock_rate,
                    s.fsync_delay_ms
                );
                *last = s;
            }
        }
        self.fsync_delay_ms
            .store(s.fsync_delay_ms, Ordering::Relaxed);
        let mut r = self.rate.lock();
        if r.rate != s.clock_rate {
            *r = RateChange {
                generation: r.generation + 1,
                rate: s.clock_rate,
                at: Instant::now(),
            };
        }
    }

    /// The current fsync delay.
    pub fn fsync_delay(&self) -> Duration {
        Duration::from_millis(self.fsync_delay_ms.load(Ordering::Relaxed))
    }

    /// The latest clock-rate change.
    pub fn clock_rate(&self) -> RateChange {
        *self.rate.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_comments() {
        let s = Settings::parse(
            Path::new("c"),
            "# chaos\nclock-rate 1.004\n\nfsync-delay-ms 300 # slow\n",
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                clock_rate: 1.004,
                fsync_delay_ms: 300
            }
        );
        assert_eq!(
            Settings::parse(Path::new("c"), "").unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn bad_lines_name_the_file_line_and_problem() {
        for (text, what) in [
            ("clock-rate fast", "not a number"),
            ("clock-rate 3", "within [0.5, 2]"),
            ("clock-rate NaN", "within [0.5, 2]"),
            ("fsync-delay-ms -1", "not a whole number"),
            ("fsync-delay-ms 99999", "at most 60000"),
            ("tick 1", "unknown setting"),
            ("clock-rate", "expected `name value`"),
        ] {
            let e = Settings::parse(Path::new("ctl"), &format!("\n{text}")).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("ctl line 2") && msg.contains(what), "{msg}");
        }
    }

    #[test]
    fn poll_applies_changes_and_keeps_settings_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("control");
        let c = Control::new(&p);
        assert_eq!(c.clock_rate().generation, 0);
        std::fs::write(&p, "clock-rate 1.01\nfsync-delay-ms 5\n").unwrap();
        c.poll_once();
        assert_eq!(c.fsync_delay(), Duration::from_millis(5));
        let r = c.clock_rate();
        assert_eq!((r.generation, r.rate), (1, 1.01));
        std::fs::write(&p, "clock-rate oops\n").unwrap();
        c.poll_once();
        assert_eq!(c.clock_rate().generation, 1);
        assert_eq!(c.fsync_delay(), Duration::from_millis(5));
        std::fs::remove_file(&p).unwrap();
        c.poll_once();
        assert_eq!(
            (c.clock_rate().rate, c.fsync_delay()),
            (1.0, Duration::ZERO)
        );
    }
}
