//! Runs every checker over a saved run directory (`quarry chaos check DIR`).
//!
//! A run directory holds the files named in [`crate::files`]. Each checker reports what
//! it looked at and its violations; a run passes when every checker has none. A final
//! dump missing (the run stopped before reading the cluster back) is itself a violation
//! of the checkers that need it, never a silent pass.

use std::path::Path;

use tablet::meta::TabletRecord;

use crate::counter::{self, CounterValue};
use crate::error::Result;
use crate::files;
use crate::history::{self, Operation};
use crate::jsonl;
use crate::linked::{self, LinkRow};
use crate::nemesis;
use crate::ownership;

/// One checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The checker's name.
    pub name: &'static str,
    /// What it looked at, in a few words.
    pub checked: String,
    /// What it found wrong (empty: pass).
    pub violations: Vec<String>,
}

/// Runs every checker over the run directory `dir`.
pub fn check_dir(dir: &Path) -> Result<Vec<Verdict>> {
    let ops = history::read_operations(&dir.join(files::HISTORY))?;
    let nem: Vec<nemesis::Record> = jsonl::read_all(&dir.join(files::NEMESIS))?;
    let fin = dir.join(files::FINAL);
    let finished = fin.join(files::FINAL_DONE).exists();
    let mut out = vec![
        crate::linearizable::verdict(&ops),
        ownership_verdict(dir, &nem)?,
    ];
    let missing = |name: &'static str| Verdict {
        name,
        checked: "nothing".into(),
        violations: vec!["the final state was not read back (run interrupted?)".into()],
    };
    if finished {
        let links: Vec<LinkRow> = jsonl::read_all(&fin.join(files::LINKS))?;
        out.push(link_verdict(&links, &ops));
        let counters: Vec<CounterValue> = jsonl::read_all(&fin.join(files::COUNTERS))?;
        out.push(counter_verdict(&ops, &counters));
        let meta: Vec<TabletRecord> = jsonl::read_all(&fin.join(files::METADATA))?;
        out.push(Verdict {
            name: "metadata-coverage",
            checked: format!("{} tablets", meta.len()),
            violations: crate::coverage::violations(&meta),
        });
    } else {
        out.extend([
            missing("linked-list"),
            missing("exactly-once"),
            missing("metadata-coverage"),
        ]);
    }
    out.push(crate::locks::verdict(&ops));
    Ok(out)
}

fn ownership_verdict(dir: &Path, nem: &[nemesis::Record]) -> Result<Verdict> {
    let mut ivs = ownership::intervals(&dir.join(files::ROOT))?;
    ownership::close_at_kills(&mut ivs, &nemesis::kills(nem));
    let bad = ownership::overlaps(&ivs, &Default::default());
    Ok(Verdict {
        name: "ownership",
        checked: format!("{} serving intervals", ivs.len()),
        violations: bad
            .iter()
            .map(|(a, b)| {
                format!(
                    "tablet {}: {} (epoch {}, {}..{:?}) and {} (epoch {}, {}..{:?}) overlap",
                    a.tablet, a.server, a.epoch, a.start, a.end, b.server, b.epoch, b.start, b.end
                )
            })
            .collect(),
    })
}

fn link_verdict(links: &[LinkRow], ops: &[Operation]) -> Verdict {
    let rep = linked::verify(links, ops);
    Verdict {
        name: "linked-list",
        checked: format!(
            "REFERENCED {} UNREFERENCED {} UNDEFINED {}",
            rep.referenced,
            rep.unreferenced,
            rep.undefined.len()
        ),
        violations: rep.violations(),
    }
}

fn counter_verdict(ops: &[Operation], finals: &[CounterValue]) -> Verdict {
    let acc = counter::accounts(ops, finals);
    let (acked, unknown): (i64, i64) = acc
        .values()
        .fold((0, 0), |(a, u), x| (a + x.acked, u + x.unknown));
    Verdict {
        name: "exactly-once",
        checked: format!(
            "{} counters, {acked} acked and {unknown} unknown increments",
            acc.len()
        ),
        violations: counter::violations(&acc),
    }
}
