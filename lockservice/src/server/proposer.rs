//! The leader's proposer: group commit of client commands into Raft entries.
//!
//! openraft 0.9 appends and fsyncs every `client_write` as its own log entry, inside its
//! core task, one after another; with many clients the leader's fsyncs (and one
//! AppendEntries per entry to each follower) become the ceiling. The proposer keeps at most
//! [`IN_FLIGHT`] proposals in flight. A command that arrives while fewer are in flight and
//! none is queued is proposed at once, alone, from the caller's own task, so a lone client
//! waits no longer than before; commands that
//! arrive while the pipe is full queue up and go together as one [`Command::Batch`] entry
//! when a slot frees (at most [`MAX_BATCH`] commands and about [`MAX_BATCH_BYTES`]).
//!
//! Why this is safe: a batch is one log entry, committed or lost as a whole; the state
//! machine applies its commands in order exactly as if each had been an entry of its own
//! (`LockState::apply`), so every replica reaches the same state and each waiter gets the
//! result its own command produced. Nothing is acknowledged before the entry is committed
//! and applied, as before. When the proposal fails (this replica is not or no longer the
//! leader, or Raft stopped), every command of the batch gets that error; the outcome of a
//! command whose entry may still commit is unknown to its client, exactly as for a single
//! proposal that fails the same way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;

use crate::error::{Error, Result};
use crate::raft::{NodeId, Raft};
use crate::state::{Applied, Command, Reply};

/// How a proposal fails in openraft.
pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;
type MapErr = Arc<dyn Fn(WriteError) -> Error + Send + Sync>;

/// Proposals in flight at once (the rest queue and are batched). One since the leader
/// replicates early (`raft::followers`): with the fsyncs overlapped, a second proposal in
/// flight only splits the queue into smaller entries. 8 clients on 8 locks, interleaved
/// runs: 1 → 2 586 / 2 425 cycles/s, 2 → 2 362 / 2 234 (3 → 2 056 / 2 200 in an earlier
/// pair); 1-client p50 the same within noise (before early replication, 2 was best).
pub const IN_FLIGHT: usize = 1;
/// Most commands in one batch.
pub const MAX_BATCH: usize = 256;
/// A batch stops growing once its commands' contents reach this many bytes (the first
/// command always goes; a file holds at most 256 KiB, so an entry stays well below the
/// Raft log's record limit).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

type Waiter = oneshot::Sender<Result<Reply>>;

/// Queues commands for the proposer task (see the module doc).
pub struct Proposer {
    tx: mpsc::UnboundedSender<(Command, Waiter)>,
    raft: Raft,
    map_err: MapErr,
    /// Free proposal slots (taken by a fast-path proposal or by a batch).
    slots: Arc<Semaphore>,
    /// Commands sent to the proposer task and not yet taken by it.
    queued: Arc<AtomicUsize>,
}

impl Proposer {
    /// Starts the proposer task over `raft`; `map_err` turns a failed `client_write`
    /// into the error every waiter of that proposal gets.
    pub fn start(
        raft: Raft,
        map_err: impl Fn(WriteError) -> Error + Send + Sync + 'static,
    ) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        let map_err: MapErr = Arc::new(map_err);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(
            raft.clone(),
            rx,
            map_err.clone(),
            slots.clone(),
            queued.clone(),
        ));
        Proposer {
            tx,
            raft,
            map_err,
            slots,
            queued,
        }
    }

    /// Proposes `cmd`; returns its result once its entry is committed and applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Reply> {
        // A free slot and nobody queued: propose from the caller's task, as one entry,
        // without the hop through the proposer task (a lone client's case).
        if self.queued.load(Ordering::SeqCst) == 0 {
            if let Ok(_slot) = self.slots.clone().try_acquire_owned() {
                return propose_one(&self.raft, cmd, &*self.map_err).await;
            }
        }
        let (tx, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.tx
            .send((cmd, tx))
            .map_err(|_| Error::Unavailable("the replica is shutting down".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("the replica is shutting down".into()))?
    }
}

/// The bytes a command adds to an entry, roughly (its content dominates).
fn weight(cmd: &Command) -> usize {
    match cmd {
        Command::Create { path, content, .. } | Command::Write { path, content, .. } => {
            64 + path.len() + content.len()
        }
        _ => 64,
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<(Command, Waiter)>,
    map_err: MapErr,
    slots: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
) {
    loop {
        // The first command, then a slot: a slot is never held idle, so a lone client's
        // command finds it free and takes the fast path.
        let Some(first) = rx.recv().await else {
            return;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = weight(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += weight(&next.0);
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::SeqCst);
        let raft = raft.clone();
        let map_err = map_err.clone();
        tokio::spawn(async move {
            commit(&raft, batch, &*map_err).await;
            drop(slot);
        });
    }
}

/// Proposes `cmd` as an entry of its own and returns its result.
async fn propose_one(
    raft: &Raft,
    cmd: Command,
    map_err: &(dyn Fn(WriteError) -> Error + Send + Sync),
) -> Result<Reply> {
    match raft.client_write(cmd).await {
        Ok(resp) => resp.data.result,
        Err(e) => Err(map_err(e)),
    }
}

async fn commit(
    raft: &Raft,
    mut batch: Vec<(Command, Waiter)>,
    map_err: &(dyn Fn(WriteError) -> Error + Send + Sync),
) {
    if batch.len() == 1 {
        let (cmd, waiter) = batch.pop().expect("one command");
        let _ = waiter.send(propose_one(raft, cmd, map_err).await);
        return;
    }
    let (cmds, waiters): (Vec<Command>, Vec<Waiter>) = batch.into_iter().unzip();
    let n = cmds.len();
    let results: Vec<Result<Reply>> = match raft.client_write(Command::Batch(cmds)).await {
        Ok(resp) => match resp.data {
            Applied {
                result: Ok(Reply::Batch(results)),
                ..
            } if results.len() == n => results,
            other => {
                let e = Error::Storage(format!(
                    "a batch of {n} commands was applied as {:?}",
                    other.result
                ));
                vec![Err(e); n]
            }
        },
        Err(e) => vec![Err(map_err(e)); n],
    };
    for (waiter, result) in waiters.into_iter().zip(results) {
        let _ = waiter.send(result);
    }
}
