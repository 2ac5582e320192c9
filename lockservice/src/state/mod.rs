//! The replicated state machine: namespace, sessions, locks and sequencers.
//!
//! [`LockState::apply`] is the only way state changes. It is deterministic: it reads no
//! clock, does no I/O and iterates only ordered maps, so every replica that applies the
//! same log reaches the same state and produces the same [`Event`]s. Time enters only as
//! commands the leader proposes from its own timers ([`Command::ExpireSession`],
//! [`Command::EndLockDelay`]); see the crate essay for why that is safe.
//!
//! Invariants (checked by `check_invariants` in tests after every step):
//! - every node's parent exists and is a directory that lists it as a child;
//! - a lock is held either by one exclusive holder or by any number of shared holders;
//! - every holder and every ephemeral owner is a live session, and the session's own
//!   `locks`/`ephemerals` sets list exactly those nodes;
//! - every generation handed out is larger than every earlier one (`next_generation`
//!   only grows), so a sequencer names one acquisition for ever;
//! - an ephemeral node's children are ephemeral nodes of the same session.

mod locks;
mod namespace;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use namespace::{parent_of, validate_path, MAX_CONTENT, MAX_PATH};

/// A session's id, assigned by the state machine (1, 2, ...; never reused).
pub type SessionId = u64;
/// A lock generation: the fencing token of one acquisition (strictly increasing).
pub type Generation = u64;

/// Longest client description kept with a session.
pub const MAX_CLIENT_NAME: usize = 256;

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LockMode {
    /// One holder, nobody else.
    Exclusive,
    /// Any number of holders, no exclusive one.
    Shared,
}

/// Proof of one lock acquisition: attach it to requests that change shared state and have
/// the receiver check it ([`LockState::check_sequencer`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequencer {
    /// The locked node.
    pub path: String,
    /// The mode it was acquired in.
    pub mode: LockMode,
    /// The acquisition's generation.
    pub generation: Generation,
}

/// One state change. Proposed through Raft and applied in log order on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Starts a session; the reply carries its id.
    CreateSession {
        /// Free-form description of the client (host, pid, role), for operators.
        client: String,
    },
    /// Ends a session at its client's request: locks are freed at once (no lock-delay).
    CloseSession {
        /// The session.
        session: SessionId,
    },
    /// Ends a session whose lease ran out by the leader's clock: locks are released into
    /// lock-delay, ephemeral nodes are deleted.
    ExpireSession {
        /// The session.
        session: SessionId,
    },
    /// Creates a file or directory.
    Create {
        /// Absolute path; its parent must be an existing directory.
        path: String,
        /// A directory rather than a file.
        dir: bool,
        /// Initial content (files only).
        content: Vec<u8>,
        /// When set, the node is ephemeral: deleted when this session ends.
        ephemeral: Option<SessionId>,
    },
    /// Replaces a file's content.
    Write {
        /// The file.
        path: String,
        /// New content.
        content: Vec<u8>,
        /// Compare-and-set: fail unless the content generation is this one.
        expected_content_generation: Option<u64>,
        /// Fencing: fail unless this sequencer names a current lock holding.
        fence: Option<Sequencer>,
    },
    /// Deletes a file or an empty directory (and any locks on it).
    Delete {
        /// The node.
        path: String,
        /// Fencing: fail unless this sequencer names a current lock holding.
        fence: Option<Sequencer>,
    },
    /// Acquires a lock without waiting (blocking acquire retries this on lock events).
    Acquire {
        /// The acquiring session.
        session: SessionId,
        /// The node to lock.
        path: String,
        /// Exclusive or shared.
        mode: LockMode,
    },
    /// Releases a lock the session holds; frees it at once.
    Release {
        /// The holding session.
        session: SessionId,
        /// The locked node.
        path: String,
    },
    /// Ends the lock-delay that began when the holding with `generation` was released by
    /// expiry (a no-op when a newer expiry restarted the delay).
    EndLockDelay {
        /// The locked node.
        path: String,
        /// The generation of the expired holding.
        generation: Generation,
    },
    /// Several commands in one log entry, applied in order exactly as if each had been an
    /// entry of its own; the reply is [`Reply::Batch`] with one result per command. The
    /// leader's proposer packs commands that arrive while earlier proposals are in flight
    /// (`server::proposer`). A batch inside a batch is refused (deterministically).
    Batch(Vec<Command>),
}

/// What a successful command returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A new session.
    Session(SessionId),
    /// A node was created or written; its metadata after the change.
    Node(NodeMeta),
    /// A lock was acquired (or was already held by this session in this mode).
    Acquired(Sequencer),
    /// Done; nothing to return.
    Done,
    /// The results of a [`Command::Batch`], in its order.
    Batch(Vec<Result<Reply>>),
}

/// A node's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Absolute path.
    pub path: String,
    /// A directory rather than a file.
    pub is_dir: bool,
    /// Distinguishes this node from earlier nodes of the same name (never reused).
    pub instance: u64,
    /// Increases on every write of the content (1 at creation).
    pub content_generation: u64,
    /// Generation of the newest acquisition of the node's lock (0 if never locked).
    pub lock_generation: Generation,
    /// Owning session of an ephemeral node.
    pub ephemeral_owner: Option<SessionId>,
    /// Content length in bytes.
    pub len: u64,
}

/// Something watchers may want to hear about, produced by `apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A file's content changed (also sent at creation).
    ContentChanged {
        /// The file.
        path: String,
        /// Its new content generation.
        content_generation: u64,
    },
    /// A node was deleted.
    Deleted {
        /// The node.
        path: String,
    },
    /// A directory gained a child.
    ChildAdded {
        /// The directory.
        parent: String,
        /// The child's name.
        name: String,
    },
    /// A directory lost a child.
    ChildRemoved {
        /// The directory.
        parent: String,
        /// The child's name.
        name: String,
    },
    /// A lock was acquired.
    LockAcquired {
        /// The acquisition.
        sequencer: Sequencer,
        /// The acquiring session.
        session: SessionId,
    },
    /// A lock holding ended.
    LockReleased {
        /// The ended acquisition.
        sequencer: Sequencer,
        /// Its session.
        session: SessionId,
        /// Released by session expiry: the lock is now in lock-delay.
        by_expiry: bool,
    },
    /// A lock's lock-delay ended; it may be acquired again.
    LockDelayEnded {
        /// The node.
        path: String,
        /// The generation of the expired holding that started the delay.
        generation: Generation,
    },
    /// A session was created.
    SessionCreated {
        /// The session.
        session: SessionId,
    },
    /// A session ended.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// By expiry (rather than by its client closing it).
        expired: bool,
    },
}

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The command's result.
    pub result: Result<Reply>,
    /// What changed, in order.
    pub events: Vec<Event>,
}

/// Who holds a node's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolders {
    /// The exclusive holder and its generation.
    pub exclusive: Option<(SessionId, Generation)>,
    /// Shared holders and their generations.
    pub shared: BTreeMap<SessionId, Generation>,
    /// Set while in lock-delay: the generation of the expired holding that started it.
    pub delayed: Option<Generation>,
}

impl LockHolders {
    fn is_free(&self) -> bool {
        self.exclusive.is_none() && self.shared.is_empty()
    }
}

/// A node of the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// A directory rather than a file.
    pub is_dir: bool,
    /// See [`NodeMeta::instance`].
    pub instance: u64,
    /// See [`NodeMeta::content_generation`].
    pub content_generation: u64,
    /// See [`NodeMeta::lock_generation`].
    pub lock_generation: Generation,
    /// Owning session of an ephemeral node.
    pub ephemeral_owner: Option<SessionId>,
    /// File content (empty for directories).
    pub content: Vec<u8>,
    /// Child names (directories only).
    pub children: BTreeSet<String>,
    /// The node's lock.
    pub lock: LockHolders,
}

/// A session as the state machine knows it (leases live in the leader's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The client's description.
    pub client: String,
    /// Paths whose locks it holds.
    pub locks: BTreeSet<String>,
    /// Ephemeral nodes it owns.
    pub ephemerals: BTreeSet<String>,
}

/// The whole replicated state. Serialized as the snapshot body
/// (docs/format/lock-snapshot.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    nodes: BTreeMap<String, Node>,
    sessions: BTreeMap<SessionId, SessionInfo>,
    next_session: SessionId,
    next_instance: u64,
    next_generation: Generation,
}

impl Default for LockState {
    fn default() -> Self {
        Self::new()
    }
}

impl LockState {
    /// An empty namespace holding only the root directory `/`.
    pub fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), Node::new(true, 1, Vec::new(), None));
        LockState {
            nodes,
            sessions: BTreeMap::new(),
            next_session: 1,
            next_instance: 2,
            next_generation: 1,
        }
    }

    /// Applies one command: the result and the events it produced. Never panics on any
    /// command (bad commands are errors that change nothing).
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        let mut events = Vec::new();
        let result = match cmd {
            Command::CreateSession { client } => self.create_session(client, &mut events),
            Command::CloseSession { session } => self.end_session(*session, false, &mut events),
            Command::ExpireSession { session } => self.end_session(*session, true, &mut events),
            Command::Create {
                path,
                dir,
                content,
                ephemeral,
            } => self.create(path, *dir, content, *ephemeral, &mut events),
            Command::Write {
                path,
                content,
                expected_content_generation,
                fence,
            } => self.write(
                path,
                content,
                *expected_content_generation,
                fence.as_ref(),
                &mut events,
            ),
            Command::Delete { path, fence } => self.delete(path, fence.as_ref(), &mut events),
            Command::Acquire {
                session,
                path,
                mode,
            } => self.acquire(*session, path, *mode, &mut events),
            Command::Release { session, path } => self.release(*session, path, &mut events),
            Command::EndLockDelay { path, generation } => {
                self.end_lock_delay(path, *generation, &mut events)
            }
            Command::Batch(cmds) => {
                let results = cmds
                    .iter()
                    .map(|c| {
                        if matches!(c, Command::Batch(_)) {
                            return Err(Error::InvalidArgument("a batch inside a batch".into()));
                        }
                        let one = self.apply(c);
                        events.extend(one.events);
                        one.result
                    })
                    .collect();
                Ok(Reply::Batch(results))
            }
        };
        if result.is_err() {
            debug_assert!(events.is_empty(), "a failed command changed state");
        }
        Applied { result, events }
    }

    fn create_session(&mut self, client: &str, events: &mut Vec<Event>) -> Result<Reply> {
        if client.len() > MAX_CLIENT_NAME {
            return Err(Error::InvalidArgument(format!(
                "client name of {} bytes exceeds {MAX_CLIENT_NAME}",
                client.len()
            )));
        }
        let id = self.next_session;
        self.next_session += 1;
        let info = SessionInfo {
            client: client.to_string(),
            ..SessionInfo::default()
        };
        self.sessions.insert(id, info);
        events.push(Event::SessionCreated { session: id });
        Ok(Reply::Session(id))
    }

    fn end_session(
        &mut self,
        id: SessionId,
        expired: bool,
        events: &mut Vec<Event>,
    ) -> Result<Reply> {
        let Some(info) = self.sessions.remove(&id) else {
            return Err(Error::SessionExpired(id));
        };
        for path in &info.locks {
            self.drop_holding(id, path, expired, events);
        }
        // Deepest first, so an ephemeral directory is empty when its turn comes.
        for path in info.ephemerals.iter().rev() {
            self.remove_node(path, events);
        }
        events.push(Event::SessionEnded {
            session: id,
            expired,
        });
        Ok(Reply::Done)
    }

    /// A session's details, if it is live.
    pub fn session(&self, id: SessionId) -> Option<&SessionInfo> {
        self.sessions.get(&id)
    }

    /// Every live session, by id.
    pub fn sessions(&self) -> &BTreeMap<SessionId, SessionInfo> {
        &self.sessions
    }

    /// Every lock now in lock-delay: (path, generation of the expired holding).
    pub fn delayed_locks(&self) -> Vec<(String, Generation)> {
        self.nodes
            .iter()
            .filter_map(|(p, n)| n.lock.delayed.map(|g| (p.clone(), g)))
            .collect()
    }

    fn live_session(&self, id: SessionId) -> Result<()> {
        if self.sessions.contains_key(&id) {
            Ok(())
        } else {
            Err(Error::SessionExpired(id))
        }
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        namespace::check_tree(self);
        locks::check_locks(self);
    }
}
