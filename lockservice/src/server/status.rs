//! What a running replica reports about itself, for status pages and metrics.
//!
//! [`ReplicaView`] is a cheap, cloneable handle on a [`Replica`](super::Replica)'s shared
//! state; [`ReplicaView::status`] takes a consistent-enough snapshot without waiting on
//! Raft: openraft's latest metrics (role, term, leader, log and applied index, members)
//! and the applied state machine's session and lock counts. It is this replica's local
//! view (a follower's applied index and sessions lag the leader's by the replication
//! delay), not a linearizable read.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Inner;
use crate::raft::NodeId;

/// A replica's status at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// This replica's id.
    pub id: NodeId,
    /// Raft role (`Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`).
    pub role: String,
    /// True when this replica leads and has reset its lease table for its term.
    pub leading: bool,
    /// Current Raft term.
    pub term: u64,
    /// The leader this replica knows of, if any.
    pub leader: Option<NodeId>,
    /// Index of the last entry in the local log.
    pub last_log_index: u64,
    /// Index of the last entry applied to the state machine (committed entries only).
    pub applied_index: u64,
    /// Members of the group: id and address.
    pub members: BTreeMap<NodeId, String>,
    /// Live sessions in the applied state.
    pub sessions: u64,
    /// Locks held (exclusive and shared holdings) in the applied state.
    pub locks_held: u64,
}

/// A handle on a running replica's state (see the module docs).
#[derive(Clone)]
pub struct ReplicaView(pub(crate) Arc<Inner>);

impl ReplicaView {
    /// The replica's status now.
    pub fn status(&self) -> ReplicaStatus {
        status_of(&self.0)
    }
}

/// The status of the replica whose shared state is `inner`.
pub(crate) fn status_of(inner: &Inner) -> ReplicaStatus {
    let m = inner.raft.metrics().borrow().clone();
    let members = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    let (sessions, locks_held) = {
        let data = inner.sm.data.read();
        let s = data.state.sessions();
        (
            s.len() as u64,
            s.values().map(|i| i.locks.len() as u64).sum(),
        )
    };
    ReplicaStatus {
        id: m.id,
        role: format!("{:?}", m.state),
        leading: inner.leading.lock().is_some(),
        term: m.current_term,
        leader: m.current_leader,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
        members,
        sessions,
        locks_held,
    }
}
