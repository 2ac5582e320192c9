//! The workloads of a chaos run and the history they record (`DIR/history.jsonl`).
//!
//! Each workload client is one task issuing one operation at a time through the `client`
//! crate (or the lock-service client), writing an `invoke` event before the request and a
//! completion after it (see `chaos::history` for the event kinds):
//!
//! - registers `reg/<k>`: writes of unique values (`<client>-<n>`), reads, and
//!   compare-and-sets from the last value the client saw. Writes and CAS delete the
//!   column and set it at the server's timestamp in one row mutation, so the newest
//!   applied write wins whatever the servers' clocks, and the client library never
//!   retries them blindly (they are not idempotent): a failure is an unknown outcome;
//! - counters `ctr/<k>`: increments (read-modify-write);
//! - linked lists `link/<client>-<n>`: each row names the writer's previous acknowledged
//!   row (explicit timestamps: idempotent, retried by the library);
//! - locks `/chaos/lock-0`: acquire (exclusive), hold briefly, release, each client with
//!   its own lock-service session.
//!
//! A failure that provably had no effect (a read, a refused argument) completes `fail`;
//! any other failure of a write completes `info` (unknown).
//! [`read_back`](super::readback::read_back) reads the final state after the faults for
//! the offline checkers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chaos::history::{Call, Event, Kind};
use chaos::jsonl::JsonlWriter;
use client::{Client, ClientConfig, Mutation, ReadFilter, ReadModifyWrite};
use lockservice::state::LockMode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tablet::server::ownership::mono_ns;

/// The table every workload uses.
pub const TABLE: &str = "chaos";
/// Its column family.
pub const FAMILY: &str = "cf";
/// The lock-service file the lock workload locks.
pub const LOCK_PATH: &str = "/chaos/lock-0";
/// Registers per run.
pub const REGISTERS: u32 = 5;
/// Counters per run.
pub const COUNTERS: u32 = 3;

/// Writes history events; shared by every client.
pub struct Recorder {
    out: JsonlWriter,
    next: AtomicU64,
}

impl Recorder {
    /// A recorder writing to `path`.
    pub fn create(path: &std::path::Path) -> anyhow::Result<Recorder> {
        Ok(Recorder {
            out: JsonlWriter::create(path)?,
            next: AtomicU64::new(1),
        })
    }

    fn invoke(&self, process: u32, key: &str, call: Call) -> u64 {
        let op = self.next.fetch_add(1, Ordering::Relaxed);
        self.log(op, process, key, Kind::Invoke, call);
        op
    }

    fn log(&self, op: u64, process: u32, key: &str, kind: Kind, call: Call) {
        let e = Event {
            op,
            process,
            kind,
            key: key.to_string(),
            t: mono_ns(),
            call,
        };
        if let Err(e) = self.out.append(&e) {
            // Losing history would make the checkers judge less than happened: stop.
            panic!("cannot write the history: {e}");
        }
    }

    /// Flushes and fsyncs the history.
    pub fn flush(&self) -> anyhow::Result<()> {
        Ok(self.out.flush()?)
    }
}

/// How many clients of each workload a scenario runs.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Register clients.
    pub registers: u32,
    /// Counter clients.
    pub counters: u32,
    /// Linked-list writers.
    pub links: u32,
    /// Lock clients.
    pub locks: u32,
}

/// A client configuration patient enough to ride out a fail-over but quick to give up
/// one attempt against a stopped server.
pub fn client_config(lock_addrs: Vec<String>) -> ClientConfig {
    let mut cfg = ClientConfig::new(lock_addrs);
    cfg.operation_timeout = Duration::from_secs(6);
    cfg.attempt_timeout = Duration::from_secs(1);
    cfg
}

/// Starts every client of `mix`; they run until `stop` is set.
pub fn spawn_all(
    mix: Mix,
    lock_addrs: &[String],
    rec: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
    seed: u64,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::new();
    let mut p = 0u32;
    let mut next = |kind: u32| {
        p += 1;
        (
            p,
            StdRng::seed_from_u64(seed ^ ((p as u64) << 32) ^ kind as u64),
        )
    };
    for (count, kind) in [
        (mix.registers, 0),
        (mix.counters, 1),
        (mix.links, 2),
        (mix.locks, 3),
    ] {
        for _ in 0..count {
            let (process, rng) = next(kind);
            let c = Client::new(client_config(lock_addrs.to_vec()))?;
            let w = Worker {
                c,
                process,
                rec: rec.clone(),
                stop: stop.clone(),
                rng,
            };
            handles.push(tokio::spawn(async move {
                match kind {
                    0 => w.registers().await,
                    1 => w.counters().await,
                    2 => w.links().await,
                    _ => w.locks().await,
                }
            }));
        }
    }
    Ok(handles)
}

struct Worker {
    c: Client,
    process: u32,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    rng: StdRng,
}

fn value_filter() -> ReadFilter {
    ReadFilter {
        families: Some(vec![FAMILY.to_string()]),
        ..ReadFilter::latest()
    }
}

/// Kind of a failed write: `fail` only when the request was refused as invalid.
fn write_failure(e: &client::Error) -> Kind {
    match e {
        client::Error::InvalidArgument(_) | client::Error::NotFound(_) => Kind::Fail,
        _ => Kind::Info,
    }
}

fn set_now(q: &[u8], v: &[u8]) -> Vec<Mutation> {
    vec![
        Mutation::delete_column(FAMILY, q),
        Mutation::set(FAMILY, q, tablet::SERVER_TIMESTAMP, v),
    ]
}

/// Reads register `key` through `c` as one recorded operation: `None` when the read
/// failed, else the value read.
pub async fn read_register_checked(
    c: &Client,
    rec: &Recorder,
    process: u32,
    key: &str,
) -> Option<Option<String>> {
    let op = rec.invoke(process, key, Call::Read { value: None });
    match c.read_row(TABLE, key.as_bytes(), &value_filter()).await {
        Ok(row) => {
            let value = row
                .and_then(|r| r.cells.into_iter().find(|c| c.qualifier == b"v"))
                .map(|c| String::from_utf8_lossy(&c.value).into_owned());
            let call = Call::Read {
                value: value.clone(),
            };
            rec.log(op, process, key, Kind::Ok, call);
            Some(value)
        }
        Err(_) => {
            rec.log(op, process, key, Kind::Fail, Call::Read { value: None });
            None
        }
    }
}

impl Worker {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    async fn registers(mut self) {
        let mut seen: Vec<Option<String>> = vec![None; REGISTERS as usize];
        let mut n = 0u64;
        while self.running() {
            let k = self.rng.random_range(0..REGISTERS) as usize;
            let key = format!("reg/{k}");
            let pick = self.rng.random_range(0..3);
            if pick == 0 {
                if let Some(v) = read_register_checked(&self.c, &self.rec, self.process, &key).await
                {
                    seen[k] = v;
                }
                continue;
            }
            n += 1;
            let value = format!("{}-{n}", self.process);
            match (pick, seen[k].clone()) {
                (2, Some(from)) => {
                    if self.cas(&key, &from, &value).await {
                        seen[k] = Some(value);
                    }
                }
                _ => {
                    let call = Call::Write {
                        value: value.clone(),
                    };
                    let op = self.rec.invoke(self.process, &key, call.clone());
                    let r = self
                        .c
                        .mutate_row(TABLE, key.as_bytes(), set_now(b"v", value.as_bytes()))
                        .await;
                    let kind = r.as_ref().map_or_else(write_failure, |_| Kind::Ok);
                    self.rec.log(op, self.process, &key, kind, call);
                    seen[k] = Some(value);
                }
            }
        }
    }

    async fn cas(&self, key: &str, from: &str, to: &str) -> bool {
        let call = |matched| Call::Cas {
            from: from.to_string(),
            to: to.to_string(),
            matched,
        };
        let op = self.rec.invoke(self.process, key, call(None));
        let pred = ReadFilter {
            families: Some(vec![FAMILY.to_string()]),
            value_range: Some((
                std::ops::Bound::Included(from.as_bytes().to_vec()),
                std::ops::Bound::Included(from.as_bytes().to_vec()),
            )),
            ..ReadFilter::latest()
        };
        let r = self
            .c
            .check_and_mutate(
                TABLE,
                key.as_bytes(),
                &pred,
                set_now(b"v", to.as_bytes()),
                vec![],
            )
            .await;
        let kind = r.as_ref().map_or_else(write_failure, |_| Kind::Ok);
        let matched = r.as_ref().ok().copied();
        self.rec.log(op, self.process, key, kind, call(matched));
        matched == Some(true)
    }

    async fn counters(mut self) {
        while self.running() {
            let key = format!("ctr/{}", self.rng.random_range(0..COUNTERS));
            let op = self.rec.invoke(self.process, &key, Call::Incr);
            let rule = ReadModifyWrite::Increment {
                family: FAMILY.to_string(),
                qualifier: b"n".to_vec(),
                delta: 1,
            };
            let r = self
                .c
                .read_modify_write(TABLE, key.as_bytes(), vec![rule])
                .await;
            let kind = r.as_ref().map_or_else(write_failure, |_| Kind::Ok);
            self.rec.log(op, self.process, &key, kind, Call::Incr);
        }
    }

    async fn links(self) {
        let mut prev: Option<String> = None;
        let mut n = 0u64;
        while self.running() {
            n += 1;
            let key = format!("link/{}-{n:06}", self.process);
            let call = Call::Link { prev: prev.clone() };
            let op = self.rec.invoke(self.process, &key, call.clone());
            let p = prev.clone().unwrap_or_default();
            let m = vec![Mutation::set(FAMILY, b"prev", 0, p.as_bytes())];
            let r = self.c.mutate_row(TABLE, key.as_bytes(), m).await;
            let kind = r.as_ref().map_or_else(write_failure, |_| Kind::Ok);
            self.rec.log(op, self.process, &key, kind, call);
            if kind == Kind::Ok {
                prev = Some(key);
            }
        }
    }

    async fn locks(self) {
        let ls = self.c.lock_service().clone();
        while self.running() {
            let Ok(session) = ls.open_session(&format!("chaos-{}", self.process)).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            while self.running() && session.is_lease_valid() {
                let key = LOCK_PATH;
                let op = self
                    .rec
                    .invoke(self.process, key, Call::Lock { generation: None });
                let r = session
                    .acquire(LOCK_PATH, LockMode::Exclusive, Duration::from_secs(1))
                    .await;
                let (kind, generation) = match &r {
                    Ok(s) => (Kind::Ok, Some(s.generation)),
                    Err(_) => (Kind::Info, None),
                };
                self.rec
                    .log(op, self.process, key, kind, Call::Lock { generation });
                if r.is_err() {
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let op = self.rec.invoke(self.process, key, Call::Unlock);
                let kind = match session.release(LOCK_PATH).await {
                    Ok(()) => Kind::Ok,
                    Err(_) => Kind::Info,
                };
                self.rec.log(op, self.process, key, kind, Call::Unlock);
            }
            let _ = session.close().await;
        }
    }
}

/// Creates the table (split so its rows spread over several tablets) and the lock file.
pub async fn setup(c: &Client) -> anyhow::Result<()> {
    let cf = client::ColumnFamily {
        name: FAMILY.into(),
        gc_policy: "maxversions=1".into(),
        locality_group: String::new(),
    };
    let splits: Vec<Vec<u8>> = ["ctr/", "link/", "link/3", "reg/", "reg/3"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    match c.create_table(TABLE, vec![cf], splits).await {
        Ok(_) | Err(client::Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e).context("creating the chaos table"),
    }
    let ls = c.lock_service();
    for (path, dir) in [("/chaos", true), (LOCK_PATH, false)] {
        match ls.create(path, dir, b"").await {
            Ok(_) | Err(lockservice::Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {path}")),
        }
    }
    Ok(())
}
