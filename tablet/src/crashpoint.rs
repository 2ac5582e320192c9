//! Named crash points for the crash-at-every-step tests (RELIABILITY.md T5).
//!
//! [`hit`]`(name)` aborts the process (`std::process::abort`, which like `kill -9` runs no
//! destructors, flushes nothing and replies to nobody) when the environment variable
//! [`ENV`] (`QUARRY_CRASHPOINT`) equals `name`. The variable is read once per process
//! (a `OnceLock`), so a point costs one string compare; it is always compiled in, because
//! the fault tests run the release binary and the `fail` crate must stay out of release
//! builds (DEPENDENCIES.md). A process started without the variable never crashes here.
//!
//! The points, in protocol order:
//!
//! Split on a tablet server (`server/split.rs`, DESIGN.md section 6 / issue4-shared.md):
//! - `split-after-children-written`: the children's manifests exist, METADATA untouched;
//! - `split-after-left-row`: METADATA holds the left child's row and the parent's row (an
//!   overlap the master rolls back once this server is dead);
//! - `split-after-parent-row`: the parent's row describes the right child: committed;
//! - `split-before-load-children`: the parent is dropped here, no child loaded yet;
//! - `split-after-load-children`: both children loaded, nothing reported yet;
//! - `split-before-reply`: the split is about to be answered (to the master or logged).
//!
//! Unload on a tablet server (`server/service.rs`):
//! - `unload-after-flush`: the tablet was closed for writes and flushed, no reply sent;
//!
//! A move by the master (`master/src/assign.rs`):
//! - `move-after-unload`: the old server unloaded the tablet, METADATA still names it;
//! - `assign-after-epoch-bump`: METADATA names the new server at the new epoch, no load
//!   sent (also hit by plain assignments);
//! - `assign-after-load`: the new server loaded the tablet, the master's view not updated.
//!
//! The same variable can instead name a best-effort message to drop ([`lost`]), to test
//! the repair that covers its loss: `split-notify-lost` (the tablet server's `SplitDone`
//! to the master; the master's periodic scan must find the split anyway).
//!
//! Or it can name a **pause point** ([`pause`]): the first time the process reaches it,
//! it stops itself with `SIGSTOP` (once per process; the test sends `SIGCONT`). This puts
//! a pause exactly where an external `kill -STOP` can only land by luck:
//! - `mutate-after-lease-check`: a `MutateRow` to a user table (METADATA's writes pass
//!   through) passed the lease check and is about to
//!   append to the commit log (RELIABILITY.md T2 "including requests in flight": the
//!   write must not be acknowledged after the lease ran out, and must never become
//!   visible once the tablet has moved).

use std::sync::OnceLock;

/// The environment variable naming the crash point a process aborts at.
pub const ENV: &str = "QUARRY_CRASHPOINT";

/// Every crash point, in the order of the module doc (tests iterate over them).
pub const POINTS: &[&str] = &[
    "split-after-children-written",
    "split-after-left-row",
    "split-after-parent-row",
    "split-before-load-children",
    "split-after-load-children",
    "split-before-reply",
    "unload-after-flush",
    "move-after-unload",
    "assign-after-epoch-bump",
    "assign-after-load",
];

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Best-effort messages [`lost`] can drop.
pub const LOSSES: &[&str] = &["split-notify-lost"];

/// True if the process was started with [`ENV`] equal to `name`: drop that message.
pub fn lost(name: &str) -> bool {
    debug_assert!(LOSSES.contains(&name), "unknown message loss {name}");
    armed() == Some(name)
}

/// Points where [`pause`] stops the process.
pub const PAUSES: &[&str] = &["mutate-after-lease-check"];

/// Stops the process with `SIGSTOP` the first time it reaches `name`, if it was started
/// with [`ENV`] equal to `name`; it goes on from here when sent `SIGCONT`.
pub fn pause(name: &str) {
    debug_assert!(PAUSES.contains(&name), "unknown pause point {name}");
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if armed() == Some(name) && !DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        tracing::warn!(point = name, "pause point reached: stopping");
        eprintln!("quarry: pause point {name} reached: stopping");
        // SAFETY: raise only sends a signal to this process; SIGSTOP cannot be caught.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
        eprintln!("quarry: pause point {name}: continued");
    }
}

/// Aborts the process if it was started with [`ENV`] equal to `name`.
pub fn hit(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown crash point {name}");
    if armed() == Some(name) {
        tracing::error!(point = name, "crash point reached: aborting");
        eprintln!("quarry: crash point {name} reached: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unarmed_point_returns() {
        // The test process is not started with QUARRY_CRASHPOINT set to a point name.
        if armed().is_none() {
            for p in POINTS {
                hit(p);
            }
        }
    }

    #[test]
    fn point_names_are_unique() {
        let mut v = [POINTS, LOSSES, PAUSES].concat();
        let n = v.len();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), n);
    }
}
