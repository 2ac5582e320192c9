//! `quarry crash-writer` (hidden): the process the kill -9 crash test (RELIABILITY.md S1)
//! kills. It opens one embedded tablet in `--dir` with a tiny memtable, so flushes and
//! compactions run all the time, and lets `--threads` writers mutate rows until killed.
//!
//! It prints an oracle on stdout, one line per event, flushed before the next step:
//! `PENDING <row> <value>` before a mutation is issued and `ACK <row> <value>` after it was
//! acknowledged. Writer `t` owns the rows `t-<k>`, so per row the order of events is the
//! order of operations. A value `-` is a row delete; any other value is written to both
//! `f:a` and `f:b` in one row mutation (so a torn mutation would show).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use tablet::{
    CommitLog, CommitLogOptions, Mutation, RowRange, Schema, Tablet, TabletConfig, TabletOptions,
};

/// Flags of `quarry crash-writer`.
#[derive(clap::Args, Debug)]
pub struct CrashWriterArgs {
    /// Data root (reused across runs: each run recovers what the last one left).
    #[arg(long)]
    pub dir: PathBuf,
    /// Writer threads.
    #[arg(long, default_value_t = 4)]
    pub threads: u64,
    /// Rows per writer.
    #[arg(long, default_value_t = 50)]
    pub rows: u64,
    /// Random seed (the run number keeps runs apart).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Instead of writing: recover the tablet, print every row as `ROW <row> <a> <b>` (`~`
    /// for a missing cell) in scan order, then `END`, and exit.
    #[arg(long)]
    pub dump: bool,
}

/// Opens the crash test's tablet: `tables/1/1` under `root`, with a new commit log in
/// `logs/<log>`.
pub fn open_tablet(root: &std::path::Path, log: &str) -> Result<Tablet> {
    let fs = sstable::RealFs::shared();
    let log = CommitLog::open(
        Arc::clone(&fs),
        &root.join("logs").join(log),
        CommitLogOptions::default(),
    )?;
    let mut options = TabletOptions {
        memtable_bytes: 16 * 1024,
        ..TabletOptions::default()
    };
    options.table.block_size = 1024;
    options.compaction.min_merge = 3;
    options.compaction.min_size = 1 << 20;
    Ok(Tablet::open(TabletConfig {
        fs,
        root: root.to_path_buf(),
        dir: "tables/1/1".into(),
        id: 1,
        epoch: None,
        create: Some((RowRange::all(), Schema::with_families(["f"]))),
        schema: None,
        log: Arc::new(log),
        cache: Some(sstable::cache::BlockCache::new(1 << 20)),
        options,
    })?)
}

fn dump(root: &std::path::Path, seed: u64) -> Result<()> {
    let tablet = open_tablet(root, &format!("dump-{seed}"))?;
    let mut o = std::io::stdout().lock();
    for row in tablet.scan(&RowRange::all(), &tablet::ReadFilter::latest(), None)? {
        let row = row?;
        let cell = |q: &[u8]| {
            row.cells
                .iter()
                .find(|c| c.qualifier == q)
                .map_or("~".to_string(), |c| {
                    String::from_utf8_lossy(&c.value).into_owned()
                })
        };
        writeln!(
            o,
            "ROW {} {} {}",
            String::from_utf8_lossy(&row.key),
            cell(b"a"),
            cell(b"b")
        )?;
    }
    writeln!(o, "END")?;
    tablet.close()?;
    Ok(())
}

/// Prints one oracle line, flushed before the caller goes on.
fn say(line: String) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// Runs the writers until the process is killed (or dumps the tablet with `--dump`).
pub fn run(a: CrashWriterArgs) -> Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    let root = a.dir.canonicalize()?;
    if a.dump {
        return dump(&root, a.seed);
    }
    let tablet = Arc::new(open_tablet(&root, &format!("writer-{}", a.seed))?);
    say("READY".into());
    std::thread::scope(|s| {
        for t in 0..a.threads {
            let tablet = Arc::clone(&tablet);
            let rows = a.rows;
            let seed = a.seed;
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed << 8 | t);
                for n in 0u64.. {
                    let row = format!("{t}-{:03}", rng.random_range(0..rows));
                    let delete = rng.random_range(0..10) == 0;
                    let value = if delete {
                        "-".to_string()
                    } else {
                        format!("{seed}.{t}.{n}")
                    };
                    let muts = if delete {
                        vec![Mutation::DeleteRow]
                    } else {
                        vec![
                            Mutation::set("f", b"a", 0, value.as_bytes()),
                            Mutation::set("f", b"b", 0, value.as_bytes()),
                        ]
                    };
                    say(format!("PENDING {row} {value}"));
                    if let Err(e) = tablet.mutate_row(row.as_bytes(), muts) {
                        say(format!("ERROR {row} {e}"));
                        return;
                    }
                    say(format!("ACK {row} {value}"));
                }
            });
        }
    });
    Ok(())
}
