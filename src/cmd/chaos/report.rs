//! The summary table printed at the end of a run, and `DIR/report.md` with its timeline
//! `DIR/timeline.svg` (faults as bands, each operation a dot at its invoke time and
//! latency, coloured by outcome).

use std::fmt::Write as _;
use std::path::Path;

use chaos::history::{Kind, Operation};
use chaos::nemesis::Record;

/// Latency of the operations that completed `ok`, grouped by the fault they started in.
pub struct LatencyRow {
    /// The fault's action (`no fault` for operations started outside every band).
    pub during: String,
    /// Operations completed ok.
    pub ops: usize,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}
use chaos::{files, Verdict};

/// What the report says about one run.
pub struct Summary<'a> {
    /// Scenario name.
    pub scenario: &'a str,
    /// Seed.
    pub seed: u64,
    /// Seconds of faults asked for.
    pub duration_s: u64,
    /// Whether partitions were possible.
    pub netns: bool,
    /// The command that replays the run.
    pub replay: &'a str,
    /// The checkers' verdicts.
    pub verdicts: &'a [Verdict],
    /// The history.
    pub ops: &'a [Operation],
    /// The nemesis log.
    pub nemesis: &'a [Record],
}

/// Intervals of at least `min_ns` with no operation completing `ok`, over the whole
/// history: from the first invoke to the first ok, between oks, and from the last ok to
/// the last event recorded (a cluster that never recovers is one window to the end, not
/// none).
pub fn unavailability(ops: &[Operation], min_ns: u64) -> Vec<(u64, u64)> {
    let Some(start) = ops.iter().map(|o| o.invoke.t).min() else {
        return Vec::new();
    };
    let end = ops
        .iter()
        .map(|o| {
            o.complete
                .as_ref()
                .map_or(o.invoke.t, |c| c.t.max(o.invoke.t))
        })
        .max()
        .unwrap_or(start);
    let mut bounds: Vec<u64> = ops
        .iter()
        .filter_map(|o| o.complete.as_ref().filter(|c| c.kind == Kind::Ok))
        .map(|c| c.t)
        .collect();
    bounds.push(start);
    bounds.push(end);
    bounds.sort_unstable();
    bounds
        .windows(2)
        .filter(|w| w[1] - w[0] >= min_ns)
        .map(|w| (w[0], w[1]))
        .collect()
}

fn is_fault(r: &Record) -> bool {
    r.starts_fault()
}

impl Summary<'_> {
    fn t0(&self) -> u64 {
        let first_op = self.ops.first().map_or(u64::MAX, |o| o.invoke.t);
        let first_fault = self.nemesis.first().map_or(u64::MAX, |r| r.t);
        first_op.min(first_fault)
    }

    /// The plain-text summary table.
    pub fn table(&self) -> String {
        let count = |k: Kind| self.ops.iter().filter(|o| o.outcome() == k).count();
        let faults = self.nemesis.iter().filter(|r| is_fault(r)).count();
        let gaps = unavailability(self.ops, 1_000_000_000);
        let longest = gaps.iter().map(|(a, b)| b - a).max().unwrap_or(0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {} seed {} ({} s of faults, partitions {})",
            self.scenario,
            self.seed,
            self.duration_s,
            if self.netns {
                "on"
            } else {
                "off: no network namespace"
            }
        );
        let _ = writeln!(
            s,
            "operations {} (ok {}, fail {}, unknown {}); faults injected {faults}",
            self.ops.len(),
            count(Kind::Ok),
            count(Kind::Fail),
            count(Kind::Info)
        );
        let _ = writeln!(
            s,
            "unavailability windows (>= 1 s without an ok): {}, longest {:.2} s",
            gaps.len(),
            longest as f64 / 1e9
        );
        let _ = writeln!(
            s,
            "latency of ok operations by fault they started in:{}",
            self.latency_rows()
                .iter()
                .map(|r| format!(
                    " {} {} ops p50 {:.1} ms p99 {:.1} ms;",
                    r.during, r.ops, r.p50_ms, r.p99_ms
                ))
                .collect::<String>()
        );
        let _ = writeln!(s, "{:<20} {:>10}  checked", "checker", "violations");
        for v in self.verdicts {
            let _ = writeln!(
                s,
                "{:<20} {:>10}  {}",
                v.name,
                v.violations.len(),
                v.checked
            );
        }
        s
    }

    /// Writes `report.md` and `timeline.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let mut md = String::new();
        let _ = writeln!(md, "# Chaos run: {}\n", self.scenario);
        let _ = writeln!(md, "Replay: `{}`\n", self.replay);
        let _ = writeln!(md, "```text\n{}```\n", self.table());
        let _ = writeln!(md, "![timeline]({})\n", files::TIMELINE);
        let _ = writeln!(md, "## Violations\n");
        let mut any = false;
        for v in self.verdicts {
            for x in v.violations.iter().take(50) {
                any = true;
                let _ = writeln!(md, "- **{}**: {x}", v.name);
            }
        }
        if !any {
            let _ = writeln!(md, "None.");
        }
        let _ = writeln!(md, "\n## Timeline (seconds from the first event)\n");
        let t0 = self.t0();
        for r in self.nemesis {
            let _ = writeln!(
                md,
                "- {:8.3} {:?} {}: {}",
                r.t.saturating_sub(t0) as f64 / 1e9,
                r.action,
                r.target,
                r.detail
            );
        }
        std::fs::write(dir.join(files::REPORT), md)?;
        std::fs::write(dir.join(files::TIMELINE), self.svg())?;
        Ok(())
    }

    /// Ok latencies (p50, p99) of operations started inside each kind of fault band and
    /// outside all of them: how much a fault slowed the clients (a slow disk, a pause).
    pub fn latency_rows(&self) -> Vec<LatencyRow> {
        let bands = self.bands();
        let mut groups: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for o in self.ops {
            let Some(c) = o.complete.as_ref().filter(|c| c.kind == Kind::Ok) else {
                continue;
            };
            let t = o.invoke.t;
            let mut kinds: Vec<&str> = bands
                .iter()
                .filter(|(a, b, _)| *a <= t && t < *b)
                .map(|(_, _, l)| l.split(' ').next().unwrap_or(""))
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            if kinds.is_empty() {
                kinds.push("no fault");
            }
            for k in kinds {
                groups.entry(k.to_string()).or_default().push(c.t - t);
            }
        }
        groups
            .into_iter()
            .map(|(during, mut lat)| {
                lat.sort_unstable();
                let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1e6;
                LatencyRow {
                    during,
                    ops: lat.len(),
                    p50_ms: q(0.5),
                    p99_ms: q(0.99),
                }
            })
            .collect()
    }

    /// Fault bands: (start, end, label) from a fault to the action that ends it.
    fn bands(&self) -> Vec<(u64, u64, String)> {
        let end_of_run = self
            .ops
            .iter()
            .filter_map(|o| o.complete.as_ref().map(|c| c.t))
            .max()
            .unwrap_or(0);
        let mut out = Vec::new();
        for (i, r) in self.nemesis.iter().enumerate().filter(|(_, r)| is_fault(r)) {
            let end = self.nemesis[i + 1..]
                .iter()
                .find(|x| r.ended_by(x))
                .map_or(end_of_run, |x| x.t);
            out.push((
                r.t,
                end,
                format!("{:?} {} {}", r.action, r.target, r.detail),
            ));
        }
        out
    }

    fn svg(&self) -> String {
        const W: f64 = 1000.0;
        const H: f64 = 320.0;
        const MAX_LAT: f64 = 6.0;
        let t0 = self.t0();
        let t1 = self
            .ops
            .iter()
            .filter_map(|o| o.complete.as_ref().map(|c| c.t))
            .chain(self.nemesis.iter().map(|r| r.t))
            .max()
            .unwrap_or(t0 + 1)
            .max(t0 + 1);
        let x = |t: u64| 40.0 + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * (W - 60.0);
        let y = |lat_s: f64| H - 30.0 - lat_s.min(MAX_LAT) / MAX_LAT * (H - 60.0);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"monospace\" font-size=\"10\">\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n"
        );
        for (n, (a, b, label)) in self.bands().iter().enumerate() {
            let (xa, xb) = (x(*a), x(*b).max(x(*a) + 1.0));
            let _ = writeln!(
                s,
                "<rect x=\"{xa:.1}\" y=\"20\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#e33\" fill-opacity=\"0.18\"><title>{label}</title></rect>\n<text x=\"{xa:.1}\" y=\"{}\" fill=\"#a00\">{label}</text>",
                xb - xa,
                H - 50.0,
                14 + (n % 3) * 10
            );
        }
        let step = (self.ops.len() / 6000).max(1);
        for o in self.ops.iter().step_by(step) {
            let (end, colour) = match &o.complete {
                Some(c) if c.kind == Kind::Ok => (c.t, "#2a2"),
                Some(c) if c.kind == Kind::Fail => (c.t, "#888"),
                Some(c) => (c.t, "#f80"),
                None => (t1, "#f80"),
            };
            let lat = end.saturating_sub(o.invoke.t) as f64 / 1e9;
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\" fill=\"{colour}\"/>",
                x(o.invoke.t),
                y(lat)
            );
        }
        let _ = writeln!(
            s,
            "<line x1=\"40\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\n<line x1=\"40\" y1=\"20\" x2=\"40\" y2=\"{0}\" stroke=\"black\"/>\n<text x=\"2\" y=\"{2}\">6 s</text><text x=\"2\" y=\"{0}\">0</text>\n<text x=\"{3}\" y=\"{4}\">{5:.1} s</text>\n<text x=\"45\" y=\"{4}\">latency of each op at its start (green ok, grey fail, orange unknown); red bands: faults</text>",
            H - 30.0,
            W - 20.0,
            y(MAX_LAT),
            W - 60.0,
            H - 12.0,
            (t1 - t0) as f64 / 1e9
        );
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaos::history::{Call, Event};

    const S: u64 = 1_000_000_000;

    fn op(n: u64, invoke_s: f64, done: Option<(f64, Kind)>) -> Operation {
        let ev = |kind, t: f64| Event {
            op: n,
            process: 0,
            kind,
            key: "reg/0".into(),
            t: (t * S as f64) as u64,
            call: Call::Read { value: None },
        };
        Operation {
            invoke: ev(Kind::Invoke, invoke_s),
            complete: done.map(|(t, k)| ev(k, t)),
        }
    }

    #[test]
    fn windows_cover_the_start_the_gaps_and_a_cluster_that_never_came_back() {
        let ops = vec![
            op(1, 0.0, Some((2.5, Kind::Ok))), // nothing ok for the first 2.5 s
            op(2, 2.5, Some((3.0, Kind::Ok))), // short gap: not a window
            op(3, 3.0, Some((9.0, Kind::Info))), // from here on nothing succeeds
            op(4, 9.0, Some((20.0, Kind::Fail))),
            op(5, 20.0, None),
        ];
        let w = unavailability(&ops, S);
        assert_eq!(w, vec![(0, (2.5 * S as f64) as u64), (3 * S, 20 * S)]);
        assert!(unavailability(&[], S).is_empty());
    }
}
