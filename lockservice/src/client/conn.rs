//! Connections to the replicas and leader-following retries.
//!
//! A [`Conn`] knows every replica address, remembers the last leader it found, and sends a
//! request there; a `NotLeader { leader }` answer moves it to that leader at once, an
//! unreachable replica moves it to the next address after a short pause. Requests whose
//! effect may have happened even though the answer was lost (a write whose leader died)
//! are retried only when the caller says they are idempotent.
//!
//! A frozen leader (SIGSTOP, a long GC-like stall) keeps its connections open and answers
//! nothing, so an idempotent request gives each attempt [`Conn::attempt_timeout`] (plus
//! whatever the request itself waits, e.g. a blocking acquire), doubling after every
//! timeout so a merely slow leader is still waited for; the next attempt goes to the next
//! address, skipping for [`SUSPECT_FOR`] the replica that timed out. Redirects to it are
//! still followed: ignoring them (tried) kept KeepAlives away from a leader that was only
//! slow on a loaded machine long enough for sessions to expire. A non-idempotent request
//! that times out is ambiguous: it fails.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::pb::lock_client::LockClient;
use crate::server::MAX_CLIENT_MESSAGE;
use crate::wire::from_status;

/// Pause before trying the next replica after one was unreachable.
const NEXT_REPLICA_PAUSE: Duration = Duration::from_millis(25);

/// How long a replica that let an attempt time out is not followed by redirects.
pub const SUSPECT_FOR: Duration = Duration::from_secs(1);

/// Default time one attempt of an idempotent request may take (see the module doc).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);

/// True for a failure to connect (the request never left this process). Any other
/// transport failure may have happened after the server acted on the request.
fn never_sent(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    if !status.details().is_empty() {
        return false;
    }
    let mut text = status.message().to_string();
    let mut src = status.source();
    while let Some(s) = src {
        text.push_str(&s.to_string());
        src = s.source();
    }
    text.contains("tcp connect error") || text.contains("Connection refused")
}

/// How a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Any failure may be retried (reads; requests whose repetition is harmless).
    Idempotent,
    /// Only failures that prove the request was not carried out (`NotLeader`, connection
    /// refused) are retried; others are returned to the caller.
    Once,
}

/// Connections to a lock-service group.
pub struct Conn {
    addrs: Vec<String>,
    clients: Mutex<HashMap<String, LockClient<Channel>>>,
    /// Index into `addrs` or a leader address learned from a redirect.
    target: Mutex<(usize, Option<String>)>,
    /// Total time one request may take, retries included.
    pub(crate) request_timeout: Duration,
    /// Time the first attempt of an idempotent request may take (doubling per timeout).
    pub(crate) attempt_timeout: Duration,
    /// A replica that let an attempt time out, and until when redirects to it are ignored.
    suspect: Mutex<Option<(String, tokio::time::Instant)>>,
}

impl Conn {
    /// Connections to the replicas at `addrs` (host:port). Channels connect lazily.
    pub fn new(addrs: Vec<String>, request_timeout: Duration) -> Result<Conn> {
        if addrs.is_empty() {
            return Err(Error::InvalidArgument(
                "no lock-service address given".into(),
            ));
        }
        Ok(Conn {
            addrs,
            clients: Mutex::new(HashMap::new()),
            target: Mutex::new((0, None)),
            request_timeout,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            suspect: Mutex::new(None),
        })
    }

    /// Sets the time one attempt of an idempotent request may take at first.
    pub fn with_attempt_timeout(mut self, d: Duration) -> Conn {
        self.attempt_timeout = d.max(Duration::from_millis(1));
        self
    }

    fn is_suspect(&self, addr: &str) -> bool {
        let s = self.suspect.lock();
        matches!(&*s, Some((a, until)) if a == addr && tokio::time::Instant::now() < *until)
    }

    fn timed_out(&self, addr: &str) {
        let until = tokio::time::Instant::now() + SUSPECT_FOR;
        *self.suspect.lock() = Some((addr.to_string(), until));
        self.redirect(None);
    }

    fn client(&self, addr: &str) -> Result<LockClient<Channel>> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad address {addr}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .local_address(crate::bind::source_ip());
        let c = LockClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_CLIENT_MESSAGE)
            .max_encoding_message_size(MAX_CLIENT_MESSAGE);
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn current(&self) -> String {
        let t = self.target.lock();
        t.1.clone()
            .unwrap_or_else(|| self.addrs[t.0 % self.addrs.len()].clone())
    }

    fn redirect(&self, leader: Option<String>) {
        let mut t = self.target.lock();
        match leader {
            Some(l) => t.1 = Some(l),
            None => {
                t.1 = None;
                t.0 += 1;
                // Skip a suspect replica (when there is another to try).
                if self.addrs.len() > 1 && self.is_suspect(&self.addrs[t.0 % self.addrs.len()]) {
                    t.0 += 1;
                }
            }
        }
    }

    /// The address requests currently go to.
    pub fn leader_hint(&self) -> String {
        self.current()
    }

    /// Sends `f` to the leader, following redirects and retrying by `retry` until the
    /// request timeout.
    pub async fn call<T, F, Fut>(&self, retry: Retry, f: F) -> Result<T>
    where
        F: Fn(LockClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_waiting(retry, Duration::ZERO, f).await
    }

    /// As [`Conn::call`] for a request that may itself wait up to `wait` on the server
    /// (a blocking acquire): each attempt and the whole call get `wait` more time.
    pub async fn call_waiting<T, F, Fut>(&self, retry: Retry, wait: Duration, f: F) -> Result<T>
    where
        F: Fn(LockClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout + wait;
        let mut attempt = self.attempt_timeout;
        loop {
            let addr = self.current();
            let client = self.client(&addr)?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let limit = match retry {
                Retry::Idempotent => left.min(attempt + wait),
                Retry::Once => left,
            };
            let err = match tokio::time::timeout(limit, f(client)).await {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(status)) => (from_status(&status), never_sent(&status)),
                Err(_) => {
                    self.timed_out(&addr);
                    if retry == Retry::Once || tokio::time::Instant::now() >= deadline {
                        return Err(Error::DeadlineExceeded(format!(
                            "no answer from the lock service ({addr}) within {limit:?}"
                        )));
                    }
                    attempt = attempt.saturating_mul(2);
                    continue;
                }
            };
            let retry_now = match &err.0 {
                Error::NotLeader { leader } => {
                    let known = leader.as_deref().is_some_and(|l| l != addr);
                    self.redirect(if known { leader.clone() } else { None });
                    known
                }
                Error::Unavailable(_) => {
                    self.redirect(None);
                    if retry == Retry::Once && !err.1 {
                        return Err(err.0);
                    }
                    false
                }
                _ => return Err(err.0),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(err.0);
            }
            if !retry_now {
                tokio::time::sleep(NEXT_REPLICA_PAUSE).await;
            }
        }
    }
}
