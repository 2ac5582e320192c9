//! JSON-lines files: one serde record per line, appended by one writer, read whole.
//!
//! Every run file of a chaos run (history, nemesis log, ownership logs) is in this form
//! so a run directory can be checked offline, by `quarry chaos check DIR`, long after the
//! cluster is gone. Lines are written whole (one `write` of the line and its newline
//! through a buffer that is flushed at [`JsonlWriter::flush`]); a reader rejects any line
//! that does not parse, naming the file and line.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Appends records to a JSON-lines file; shareable between threads.
pub struct JsonlWriter {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl JsonlWriter {
    /// Creates (truncating) `path`.
    pub fn create(path: &Path) -> Result<JsonlWriter> {
        let f = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::new(f)),
        })
    }

    /// Appends one record.
    pub fn append<T: Serialize>(&self, rec: &T) -> Result<()> {
        let mut line = serde_json::to_vec(rec).map_err(|e| Error::BadRecord {
            path: self.path.clone(),
            line: 0,
            what: format!("cannot encode a record: {e}"),
        })?;
        line.push(b'\n');
        self.out
            .lock()
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Writes buffered records out and fsyncs the file.
    pub fn flush(&self) -> Result<()> {
        let mut out = self.out.lock();
        out.flush().map_err(|e| Error::io(&self.path, e))?;
        out.get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads every record of `path`; a missing file reads as no records.
pub fn read_all<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(line).map_err(|e| Error::BadRecord {
            path: path.to_path_buf(),
            line: n + 1,
            what: e.to_string(),
        })?;
        out.push(rec);
    }
    Ok(out)
}
