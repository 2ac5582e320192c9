//! A file system for tests of `io_off_runtime`: every fsync waits until a task on the
//! test's runtime lets it through. Run on a current-thread runtime, a store that fsyncs
//! on the runtime's thread blocks the only thread that could let it through, and the
//! fsync fails after a timeout; a store that fsyncs on the blocking pool goes through.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sstable::fault::SyncHookFs;
use sstable::{Fs, RealFs};

/// A current-thread runtime, the file system, and the task that lets its fsyncs through
/// (spawn it on that runtime; it ends when the file system is dropped).
pub fn fs_needing_the_runtime() -> (
    tokio::runtime::Runtime,
    Arc<dyn Fs>,
    impl std::future::Future<Output = ()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let hook = Arc::new(move || {
        rx.lock()
            .recv_timeout(Duration::from_secs(5))
            .expect("an fsync blocked the runtime thread that lets it through");
    });
    let fs: Arc<dyn Fs> = Arc::new(SyncHookFs::new(RealFs::shared(), hook));
    let feeder = async move {
        while tx.send(()).is_ok() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    (rt, fs, feeder)
}
