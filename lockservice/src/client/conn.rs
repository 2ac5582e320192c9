//! Connections to the replicas and leader-following retries.
//!
//! A [`Conn`] knows every replica address, remembers the last leader it found, and sends a
//! request there; a `NotLeader { leader }` answer moves it to that leader at once, an
//! unreachable replica moves it to the next address after a short pause. Requests whose
//! effect may have happened even though the answer was lost (a write whose leader died)
//! are retried only when the caller says they are idempotent.
//!
//! A frozen leader (SIGSTOP, a long GC-like stall) keeps its connections open and answers
//! nothing. An idempotent request is therefore *hedged*: when an attempt has not been
//! answered within [`Conn::attempt_timeout`] (plus whatever the request itself waits, e.g.
//! a blocking acquire), the next attempt goes to the next replica **while the first stays
//! in flight**; the first answer that is not a redirect wins. At most one attempt per
//! replica is in flight: a redirect to a replica that is still being waited on sends
//! nothing there and asks the next replica again after a pause (the followers go on naming
//! the frozen leader until they elect a new one, then name the new one or are it). So a
//! merely slow leader is still heard (its attempt is never abandoned before the request's
//! deadline) and a frozen one costs one attempt timeout plus the election. The replica
//! that let an attempt time out is skipped for [`SUSPECT_FOR`] when the client moves on to
//! the next address, but redirects to it are followed. A non-idempotent request is never
//! hedged; one that gets no answer is ambiguous: it fails.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::pb::lock_client::LockClient;
use crate::server::MAX_CLIENT_MESSAGE;
use crate::wire::from_status;

/// Pause before trying the next replica after one was unreachable or named a leader that
/// is already being waited on.
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
    /// Time an attempt of an idempotent request may go unanswered before the request is
    /// also sent to the next replica.
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
        let deadline = Instant::now() + self.request_timeout + wait;
        match retry {
            Retry::Idempotent => self.hedged(deadline, wait, f).await,
            Retry::Once => self.once(deadline, f).await,
        }
    }

    /// What a failed attempt at `addr` means: `Ok(true)` to try again at once (a redirect
    /// to a named leader), `Ok(false)` to try again after a pause, `Err` to give up.
    fn failed(&self, addr: &str, status: &tonic::Status, retry: Retry) -> Result<bool> {
        let err = from_status(status);
        match &err {
            Error::NotLeader { leader } => {
                let known = leader.as_deref().is_some_and(|l| l != addr);
                self.redirect(if known { leader.clone() } else { None });
                Ok(known)
            }
            Error::Unavailable(_) => {
                self.redirect(None);
                if retry == Retry::Once && !never_sent(status) {
                    return Err(err);
                }
                Ok(false)
            }
            _ => Err(err),
        }
    }

    /// A non-idempotent request: one attempt at a time, retried only after failures that
    /// prove it was not carried out.
    async fn once<T, F, Fut>(&self, deadline: Instant, f: F) -> Result<T>
    where
        F: Fn(LockClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        loop {
            let addr = self.current();
            let client = self.client(&addr)?;
            let status = match tokio::time::timeout_at(deadline, f(client)).await {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => {
                    self.timed_out(&addr);
                    return Err(Error::DeadlineExceeded(format!(
                        "no answer from the lock service ({addr}) before the request's deadline"
                    )));
                }
            };
            let at_once = self.failed(&addr, &status, Retry::Once)?;
            if Instant::now() >= deadline {
                return Err(from_status(&status));
            }
            if !at_once {
                tokio::time::sleep(NEXT_REPLICA_PAUSE).await;
            }
        }
    }

    /// An idempotent request, hedged across replicas (see the module doc).
    async fn hedged<T, F, Fut>(&self, deadline: Instant, wait: Duration, f: F) -> Result<T>
    where
        F: Fn(LockClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = |addr: String, client| {
            let fut = f(client);
            async move { (addr, fut.await) }
        };
        let mut inflight = FuturesUnordered::new();
        // Replicas with an attempt in flight, and when the newest attempt is overdue.
        let mut waiting: HashSet<String> = HashSet::new();
        let mut overdue: Option<(String, Instant)> = None;
        let mut next_send = Some(Instant::now());
        let mut last_err = None;
        loop {
            if next_send.is_some_and(|t| Instant::now() >= t) {
                next_send = None;
                let addr = self.current();
                if waiting.contains(&addr) {
                    // A redirect to a replica already being waited on: ask the next one.
                    self.redirect(None);
                    next_send = Some(Instant::now() + NEXT_REPLICA_PAUSE);
                } else {
                    let client = self.client(&addr)?;
                    waiting.insert(addr.clone());
                    let due = Instant::now() + self.attempt_timeout + wait;
                    overdue = Some((addr.clone(), due));
                    inflight.push(start(addr, client));
                }
            }
            let wake = [next_send, overdue.as_ref().map(|o| o.1), Some(deadline)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            tokio::select! {
                Some((addr, r)) = inflight.next() => {
                    waiting.remove(&addr);
                    if overdue.as_ref().is_some_and(|o| o.0 == addr) {
                        overdue = None;
                    }
                    let status = match r {
                        Ok(resp) => return Ok(resp.into_inner()),
                        Err(status) => status,
                    };
                    let at_once = self.failed(&addr, &status, Retry::Idempotent)?;
                    last_err = Some(from_status(&status));
                    let pause = if at_once { Duration::ZERO } else { NEXT_REPLICA_PAUSE };
                    let t = Instant::now() + pause;
                    next_send = Some(next_send.map_or(t, |n| n.min(t)));
                }
                _ = tokio::time::sleep_until(wake) => {
                    if let Some((addr, due)) = overdue.take() {
                        if Instant::now() >= due {
                            // Hedge: the attempt stays in flight, the next replica is asked too.
                            self.timed_out(&addr);
                            next_send = Some(Instant::now());
                        } else {
                            overdue = Some((addr, due));
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(match last_err {
                    Some(e) if inflight.is_empty() => e,
                    _ => Error::DeadlineExceeded(format!(
                        "no answer from the lock service ({}) within {:?}",
                        waiting.into_iter().collect::<Vec<_>>().join(", "),
                        self.request_timeout + wait
                    )),
                });
            }
        }
    }
}
