//! Domain names for the numbers a tablet deals in.

/// Identifies a tablet across the cluster (assigned by the master; unique, never reused).
pub type TabletId = u64;
/// Orders every change applied to one tablet; higher is newer. Persisted in the commit log
/// and in SSTable keys; continues across reloads and splits.
pub type SeqNo = u64;
/// A tablet's load generation: each load gets a higher one (DESIGN.md rule 7).
pub type Epoch = u64;
/// A cell timestamp: microseconds since the Unix epoch (user-visible, user-settable).
pub type Timestamp = i64;

/// A timestamp in a `SetCell` that asks the server to assign the current time.
pub const SERVER_TIMESTAMP: Timestamp = -1;
