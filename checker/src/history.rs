//! Recorded histories: one [`Operation`] per client request, and their JSON-lines form.
//!
//! An operation is an interval `[call, ret]` on one time line shared by every client (a
//! monotonic clock of the process that records, or a logical counter), the request it made
//! (`input`) and, when it returned, the answer it got (`output`).
//!
//! Invariants the checker relies on (and [`validate`] enforces):
//! - `call <= ret` for every operation whose outcome is known;
//! - `output == None` means the outcome is unknown (the request timed out, the client or
//!   the connection died): the operation may have taken effect at any point after `call`,
//!   or never. Its `ret` is ignored and conventionally [`UNKNOWN_RETURN`].
//!
//! Two operations are concurrent unless one's `ret` is strictly before the other's
//! `call`; equal instants count as concurrent (the safe reading when clocks are coarse).
//!
//! ## JSON lines
//!
//! [`write_jsonl`] writes one operation per line as a JSON object with the fields `client`,
//! `input`, `output` (`null` if unknown), `call`, `ret`, so that a run directory can be
//! checked offline with [`read_jsonl`]. Lines are bounded by [`MAX_LINE`].

use std::io::{BufRead, Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The `ret` of an operation whose outcome is unknown.
pub const UNKNOWN_RETURN: u64 = u64::MAX;

/// The longest JSON line [`read_jsonl`] accepts, in bytes (checked before parsing).
pub const MAX_LINE: usize = 1 << 20;

/// One client request: its interval in time, what it asked and what it was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// Who issued it (a client never has two operations in flight at once).
    pub client: u64,
    /// The request.
    pub input: I,
    /// The answer; `None` if the outcome is unknown.
    pub output: Option<O>,
    /// When the request was sent.
    pub call: u64,
    /// When the answer arrived ([`UNKNOWN_RETURN`] if it never did).
    pub ret: u64,
}

impl<I, O> Operation<I, O> {
    /// An operation that returned `output` at `ret`.
    pub fn completed(client: u64, input: I, output: O, call: u64, ret: u64) -> Self {
        Operation {
            client,
            input,
            output: Some(output),
            call,
            ret,
        }
    }

    /// An operation that was sent at `call` and whose outcome is unknown.
    pub fn unknown(client: u64, input: I, call: u64) -> Self {
        Operation {
            client,
            input,
            output: None,
            call,
            ret: UNKNOWN_RETURN,
        }
    }

    /// Whether the outcome is unknown (the operation may or may not have happened).
    pub fn is_unknown(&self) -> bool {
        self.output.is_none()
    }

    /// The end of the interval the checker uses: `ret`, or "never" when unknown.
    pub fn effective_ret(&self) -> u64 {
        if self.is_unknown() {
            UNKNOWN_RETURN
        } else {
            self.ret
        }
    }
}

/// What is wrong with a history or its file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operation's interval is impossible.
    #[error("operation {index} (client {client}) returns at {ret} before its call at {call}")]
    ReturnBeforeCall {
        /// Index of the operation in the history.
        index: usize,
        /// Its client.
        client: u64,
        /// Its call time.
        call: u64,
        /// Its return time.
        ret: u64,
    },
    /// A line of a JSON-lines file is not an operation.
    #[error("history line {line}: {what}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        what: String,
    },
    /// Reading or writing the file failed.
    #[error("history i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks the invariants in the module doc.
pub fn validate<I, O>(history: &[Operation<I, O>]) -> Result<(), Error> {
    for (index, op) in history.iter().enumerate() {
        if !op.is_unknown() && op.ret < op.call {
            return Err(Error::ReturnBeforeCall {
                index,
                client: op.client,
                call: op.call,
                ret: op.ret,
            });
        }
    }
    Ok(())
}

/// Writes `history` as JSON lines (does not flush or sync `w`).
pub fn write_jsonl<I: Serialize, O: Serialize>(
    mut w: impl Write,
    history: &[Operation<I, O>],
) -> Result<(), Error> {
    for op in history {
        serde_json::to_writer(&mut w, op).map_err(std::io::Error::other)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Reads a history written by [`write_jsonl`]; blank lines are skipped.
pub fn read_jsonl<I: DeserializeOwned, O: DeserializeOwned>(
    mut r: impl BufRead,
) -> Result<Vec<Operation<I, O>>, Error> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        line += 1;
        let n = std::io::Read::take(&mut r, MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE {
            return Err(Error::BadLine {
                line,
                what: format!("longer than {MAX_LINE} bytes"),
            });
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let op = serde_json::from_slice(&buf).map_err(|e| Error::BadLine {
            line,
            what: e.to_string(),
        })?;
        out.push(op);
    }
    validate(&out)?;
    Ok(out)
}
