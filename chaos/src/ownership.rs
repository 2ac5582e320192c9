//! Ownership checker: no two servers ever serve one tablet at the same time.
//!
//! Each tablet server appends to `<root>/ownership/<server_id>.jsonl` a `start` line when
//! it begins serving a tablet and an `end` line when it stops, the end stamped with the
//! moment its lease could last have let it answer (the tablet crate's
//! `server::ownership`). All processes of one machine share `CLOCK_MONOTONIC`, so the
//! intervals of different servers compare directly. An interval without an end belongs
//! to a process that was killed (or is still running): the caller closes it at the
//! process's kill time, or leaves it open forever.
//!
//! Pass (RELIABILITY.md T2/T3): no pair of intervals of different servers for one tablet
//! overlaps. Server ids are `<name>-<session id>`, so two incarnations of one process
//! count as different servers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::jsonl;

/// One serving interval of a tablet by a server, in `CLOCK_MONOTONIC` nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// The server id (`<name>-<session id>`).
    pub server: String,
    /// The tablet id.
    pub tablet: u64,
    /// The tablet epoch of this load.
    pub epoch: u64,
    /// When serving started.
    pub start: u64,
    /// When serving ended (`None`: no end was logged).
    pub end: Option<u64>,
}

impl Interval {
    /// The process name of the server (the id without its session suffix).
    pub fn server_name(&self) -> &str {
        self.server
            .rsplit_once('-')
            .map_or(self.server.as_str(), |(n, _)| n)
    }
}

#[derive(Deserialize)]
struct Line {
    event: String,
    server: String,
    tablet: u64,
    epoch: u64,
    mono_ns: u64,
}

/// Reads every ownership log under `<root>/ownership/` (none: no intervals).
pub fn intervals(root: &Path) -> Result<Vec<Interval>> {
    let dir = root.join("ownership");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut open: BTreeMap<(String, u64, u64), u64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in entries {
        let path = e.map_err(|e| Error::io(&dir, e))?.path();
        for l in jsonl::read_all::<Line>(&path)? {
            let key = (l.server, l.tablet, l.epoch);
            if l.event == "start" {
                open.insert(key, l.mono_ns);
            } else if let Some(start) = open.remove(&key) {
                out.push(Interval {
                    server: key.0,
                    tablet: key.1,
                    epoch: key.2,
                    start,
                    end: Some(l.mono_ns),
                });
            }
        }
    }
    out.extend(
        open.into_iter()
            .map(|((server, tablet, epoch), start)| Interval {
                server,
                tablet,
                epoch,
                start,
                end: None,
            }),
    );
    Ok(out)
}

/// Closes every open interval at the first kill of its server's process after the
/// interval started (`kills`: process name -> kill times).
pub fn close_at_kills(intervals: &mut [Interval], kills: &BTreeMap<String, Vec<u64>>) {
    for i in intervals.iter_mut().filter(|i| i.end.is_none()) {
        if let Some(ts) = kills.get(i.server_name()) {
            i.end = ts.iter().copied().filter(|&t| t >= i.start).min();
        }
    }
}

/// Pairs of intervals in which two different servers served one tablet at once. An
/// interval with no end counts as open until `killed_at` of its server id if given, else
/// forever.
pub fn overlaps(
    intervals: &[Interval],
    killed_at: &BTreeMap<String, u64>,
) -> Vec<(Interval, Interval)> {
    let end = |i: &Interval| {
        i.end
            .or_else(|| killed_at.get(&i.server).copied())
            .unwrap_or(u64::MAX)
    };
    let mut out = Vec::new();
    for (n, a) in intervals.iter().enumerate() {
        for b in &intervals[n + 1..] {
            if a.tablet == b.tablet && a.server != b.server && a.start < end(b) && b.start < end(a)
            {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(server: &str, tablet: u64, start: u64, end: Option<u64>) -> Interval {
        Interval {
            server: server.into(),
            tablet,
            epoch: 1,
            start,
            end,
        }
    }

    #[test]
    fn overlap_only_between_different_servers_of_one_tablet() {
        let v = vec![
            iv("a-1", 7, 0, Some(10)),
            iv("b-2", 7, 10, None),
            iv("c-3", 8, 5, Some(20)),
        ];
        assert!(overlaps(&v, &BTreeMap::new()).is_empty());
        let mut w = v.clone();
        w.push(iv("c-3", 7, 9, Some(11)));
        assert_eq!(overlaps(&w, &BTreeMap::new()).len(), 2);
    }

    #[test]
    fn open_interval_closed_at_the_next_kill_of_its_process() {
        let mut v = vec![
            iv("tablet-1-5", 7, 100, None),
            iv("tablet-2-6", 7, 150, None),
        ];
        assert_eq!(overlaps(&v, &BTreeMap::new()).len(), 1);
        let kills = BTreeMap::from([("tablet-1".to_string(), vec![50, 120, 300])]);
        close_at_kills(&mut v, &kills);
        assert_eq!(v[0].end, Some(120));
        assert!(overlaps(&v, &BTreeMap::new()).is_empty());
    }
}
