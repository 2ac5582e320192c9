//! The tablet's background threads: one flusher, one compactor.
//!
//! Two threads so that a long merging compaction never delays a minor compaction (which
//! would stall writers). Both sleep on `work_cv` and exit on shutdown. An error already
//! failed the tablet (see [`Inner::fail`]); the threads then stop working.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crate::tablet::Inner;

pub(crate) fn start(inner: &Arc<Inner>) -> Vec<JoinHandle<()>> {
    let name = |what: &str| format!("tablet-{}-{what}", inner.id);
    let flusher = {
        let weak = Arc::downgrade(inner);
        std::thread::Builder::new()
            .name(name("flush"))
            .spawn(move || run(weak, Job::Flush))
            .expect("spawn flusher")
    };
    let compactor = {
        let weak = Arc::downgrade(inner);
        std::thread::Builder::new()
            .name(name("compact"))
            .spawn(move || run(weak, Job::Compact))
            .expect("spawn compactor")
    };
    vec![flusher, compactor]
}

#[derive(Clone, Copy)]
enum Job {
    Flush,
    Compact,
}

fn run(weak: Weak<Inner>, job: Job) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        {
            let mut w = inner.work.lock();
            loop {
                if w.shutdown {
                    return;
                }
                let ready = match job {
                    Job::Flush => !inner.state.read().frozen.is_empty(),
                    Job::Compact => w.compaction_wanted,
                };
                if ready {
                    break;
                }
                inner.work_cv.wait(&mut w);
            }
            if let Job::Compact = job {
                w.compaction_wanted = false;
            }
        }
        let result = match job {
            Job::Flush => inner.flush_oldest().map(|_| ()),
            Job::Compact => loop {
                match inner.maybe_merging_compaction() {
                    Ok(true) => continue,
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
            },
        };
        if result.is_err() {
            // The tablet failed stop; nothing more to do until it is reopened.
            return;
        }
    }
}

impl Inner {
    /// Wakes the background threads.
    pub(crate) fn wake_background(&self) {
        let _w = self.work.lock();
        self.work_cv.notify_all();
    }
}
