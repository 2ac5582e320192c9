//! Connections to the replicas and leader-following retries.
//!
//! A [`Conn`] knows every replica address, remembers the last leader it found, and sends a
//! request there; a `NotLeader { leader }` answer moves it to that leader at once, an
//! unreachable replica moves it to the next address after a short pause. Requests whose
//! effect may have happened even though the answer was lost (a write whose leader died)
//! are retried only when the caller says they are idempotent.

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
        })
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
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let addr = self.current();
            let client = self.client(&addr)?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let outcome = tokio::time::timeout(left, f(client)).await;
            let err = match outcome {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(status)) => (from_status(&status), never_sent(&status)),
                Err(_) => {
                    return Err(Error::DeadlineExceeded(format!(
                        "no answer from the lock service within {:?}",
                        self.request_timeout
                    )))
                }
            };
            let retry_now = match &err.0 {
                Error::NotLeader { leader } => {
                    let known = leader.is_some() && leader.as_deref() != Some(&addr);
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
