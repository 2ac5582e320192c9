//! The source address of this process's outgoing connections.
//!
//! Every gRPC channel a Quarry process opens (Raft peers, lock-service clients, the client
//! library, the master's tablet-server connections) binds its local end to
//! [`source_ip`] when it is set. This is what lets a fault-injection run (`quarry chaos`)
//! put each process on its own loopback address (127.0.0.x) inside a network namespace
//! and cut one direction between two processes with
//! `ip rule add from A to B blackhole`: without it every connection leaves from
//! 127.0.0.1 and a `from` rule cannot tell the processes apart.
//!
//! Set by the environment variable `QUARRY_SOURCE_IP` (an IP address), read once per
//! process. Unset (the default) lets the kernel choose, as usual. An unparsable value is
//! a programmer's or operator's mistake that would silently defeat the partition: the
//! process panics with a message naming the variable.

use std::net::IpAddr;
use std::sync::OnceLock;

/// The environment variable naming the source address.
pub const SOURCE_IP_ENV: &str = "QUARRY_SOURCE_IP";

/// The address outgoing connections bind to, if `QUARRY_SOURCE_IP` is set.
pub fn source_ip() -> Option<IpAddr> {
    static IP: OnceLock<Option<IpAddr>> = OnceLock::new();
    *IP.get_or_init(|| {
        let v = std::env::var(SOURCE_IP_ENV).ok()?;
        let v = v.trim();
        if v.is_empty() {
            return None;
        }
        Some(
            v.parse()
                .unwrap_or_else(|e| panic!("{SOURCE_IP_ENV}={v:?} is not an IP address: {e}")),
        )
    })
}
