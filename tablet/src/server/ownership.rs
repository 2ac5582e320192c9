//! The ownership log: when this server served which tablet, on the machine's monotonic
//! clock, so a checker can prove no two servers ever served one tablet at the same time
//! (RELIABILITY.md T2).
//!
//! One JSON object per line in `<root>/ownership/<server_id>.jsonl`:
//! `{"event":"start"|"end","server":..,"tablet":..,"epoch":..,"mono_ns":..}`. A `start` is
//! written once a tablet is loaded and before it serves; an `end` when it stops serving,
//! stamped with the last instant it could have served: the moment of unloading, or, when
//! the lease lapsed, the lease's deadline (a paused server that wakes up late logs the
//! deadline, not the wake-up). All processes on one machine share `CLOCK_MONOTONIC`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use parking_lot::Mutex;

use crate::types::{Epoch, TabletId};

/// Nanoseconds on `CLOCK_MONOTONIC` (the same clock in every process of a machine).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `instant` on `CLOCK_MONOTONIC` (Rust's `Instant` is that clock on Linux, but opaque).
pub fn instant_to_mono_ns(instant: Instant) -> u64 {
    let (now_i, now_ns) = (Instant::now(), mono_ns());
    if instant >= now_i {
        now_ns + (instant - now_i).as_nanos() as u64
    } else {
        now_ns.saturating_sub((now_i - instant).as_nanos() as u64)
    }
}

/// Appends ownership events for one server.
pub(crate) struct OwnershipLog {
    server: String,
    file: Mutex<Option<std::fs::File>>,
}

impl OwnershipLog {
    pub(crate) fn open(root: &Path, server: &str) -> OwnershipLog {
        let dir = root.join("ownership");
        let file = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{server}.jsonl")))
            })
            .map_err(|e| tracing::warn!("no ownership log: {e}"))
            .ok();
        OwnershipLog {
            server: server.to_string(),
            file: Mutex::new(file),
        }
    }

    /// Records that `tablet` is served from now on.
    pub(crate) fn start(&self, tablet: TabletId, epoch: Epoch) {
        self.write("start", tablet, epoch, mono_ns());
    }

    /// Records that `tablet` was served last at `last` (monotonic ns).
    pub(crate) fn end(&self, tablet: TabletId, epoch: Epoch, last: u64) {
        self.write("end", tablet, epoch, last);
    }

    fn write(&self, event: &str, tablet: TabletId, epoch: Epoch, mono: u64) {
        let line = format!(
            "{{\"event\":\"{event}\",\"server\":{:?},\"tablet\":{tablet},\"epoch\":{epoch},\"mono_ns\":{mono}}}\n",
            self.server
        );
        if let Some(f) = self.file.lock().as_mut() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
