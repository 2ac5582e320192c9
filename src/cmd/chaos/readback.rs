//! The final read-back of a chaos run (`DIR/final/`), after every fault is healed and
//! every process runs again: the link rows, the counters, the METADATA records of the
//! table, and one last recorded read of each register (so a write lost at the very end
//! shows in the linearizability check). `final/done` is written last.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chaos::counter::CounterValue;
use chaos::files;
use chaos::jsonl::JsonlWriter;
use chaos::linked::LinkRow;
use client::{prefix_range, Client, ReadFilter};

use super::workload::{self, Recorder, COUNTERS, FAMILY, REGISTERS, TABLE};

/// The process number the read-back's register reads are recorded under.
pub const READBACK_PROCESS: u32 = 10_000;

/// Retries `f` until it succeeds or `bound` passes (the cluster may still be recovering).
async fn patiently<T, F, Fut>(what: &str, bound: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = client::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("reading back {what}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Reads the final state into `dir/final/`.
pub async fn read_back(
    c: &Client,
    rec: &Recorder,
    dir: &Path,
    bound: Duration,
) -> anyhow::Result<()> {
    let fin = dir.join(files::FINAL);
    std::fs::create_dir_all(&fin)?;
    for k in 0..REGISTERS {
        // Recorded reads: retry until one succeeds (failed reads are recorded as such).
        let key = format!("reg/{k}");
        let deadline = tokio::time::Instant::now() + bound;
        while !read_ok(c, rec, &key).await {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "cannot read {key} back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let f = ReadFilter::latest();
    let rows = patiently("the link rows", bound, || {
        c.read_rows(TABLE, prefix_range(b"link/"), &f, 0)
            .collect_rows()
    })
    .await?;
    let links = JsonlWriter::create(&fin.join(files::LINKS))?;
    for r in rows {
        let prev = r
            .cells
            .iter()
            .find(|c| c.family == FAMILY && c.qualifier == b"prev")
            .map(|c| String::from_utf8_lossy(&c.value).into_owned())
            .filter(|p| !p.is_empty());
        let row = String::from_utf8_lossy(&r.key).into_owned();
        links.append(&LinkRow { row, prev })?;
    }
    links.flush()?;
    let counters = JsonlWriter::create(&fin.join(files::COUNTERS))?;
    for k in 0..COUNTERS {
        let key = format!("ctr/{k}");
        let row = patiently(&key, bound, || c.read_row(TABLE, key.as_bytes(), &f)).await?;
        let value = match row.and_then(|r| r.cells.into_iter().next()) {
            None => 0,
            Some(cell) => i64::from_be_bytes(
                cell.value
                    .as_slice()
                    .try_into()
                    .with_context(|| format!("{key} holds {} bytes, not 8", cell.value.len()))?,
            ),
        };
        counters.append(&CounterValue { key, value })?;
    }
    counters.flush()?;
    let recs = patiently("METADATA", bound, || c.table_tablets(TABLE)).await?;
    let meta = JsonlWriter::create(&fin.join(files::METADATA))?;
    for r in &recs {
        meta.append(r)?;
    }
    meta.flush()?;
    std::fs::write(fin.join(files::FINAL_DONE), b"done\n")?;
    Ok(())
}

async fn read_ok(c: &Client, rec: &Recorder, key: &str) -> bool {
    workload::read_register_checked(c, rec, READBACK_PROCESS, key)
        .await
        .is_some()
}
