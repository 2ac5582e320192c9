//! S7: the tablet checked against a `BTreeMap` model under random operations, including
//! flushes, merging and major compactions, clean reopens and power cuts (RELIABILITY.md S7,
//! S3). Every acknowledged write is synced, so a power cut loses nothing the model holds.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use tablet::compaction::Leveled;
use tablet::{Cell, Mutation, ReadFilter, RowRange, Tablet, TabletOptions};

/// row -> (family, qualifier) -> timestamp -> value
type Model = BTreeMap<Vec<u8>, BTreeMap<(String, Vec<u8>), BTreeMap<i64, Vec<u8>>>>;

#[derive(Clone, Debug)]
enum Op {
    Mutate(Vec<u8>, Vec<Mutation>),
    Flush,
    Merge,
    Major,
    Reopen,
    PowerCut,
    CheckRow(Vec<u8>),
}

fn row_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..12).prop_map(|i| format!("row{i:02}").into_bytes()),
        Just(b"row\0".to_vec()),
        Just(vec![0xff, 0x00, 0x01]),
    ]
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    let fam = prop_oneof![Just("f"), Just("g"), Just("m")];
    let qual = prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"\0".to_vec())
    ];
    let value = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        6 => (fam.clone(), qual.clone(), 0i64..6, value)
            .prop_map(|(f, q, ts, v)| Mutation::set(f, &q, ts, &v)),
        // Time-range deletes only where no GC policy could have collected older versions.
        1 => (qual.clone(), 0i64..6, 1i64..4).prop_map(|(q, s, len)| Mutation::DeleteCells {
            family: "f".into(), qualifier: q, start: s, end: s + len }),
        1 => (fam.clone(), qual).prop_map(|(f, q)| Mutation::delete_column(f, &q)),
        1 => fam.prop_map(|f| Mutation::DeleteFamily { family: f.into() }),
        1 => Just(Mutation::DeleteRow),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (row_strategy(), proptest::collection::vec(mutation_strategy(), 1..5))
            .prop_map(|(r, m)| Op::Mutate(r, m)),
        2 => Just(Op::Flush),
        1 => Just(Op::Merge),
        1 => Just(Op::Major),
        1 => Just(Op::Reopen),
        1 => Just(Op::PowerCut),
        3 => row_strategy().prop_map(Op::CheckRow),
    ]
}

fn apply(model: &mut Model, row: &[u8], muts: &[Mutation]) {
    let r = model.entry(row.to_vec()).or_default();
    for m in muts {
        match m {
            Mutation::SetCell {
                family,
                qualifier,
                timestamp,
                value,
            } => {
                r.entry((family.clone(), qualifier.clone()))
                    .or_default()
                    .insert(*timestamp, value.clone());
            }
            Mutation::DeleteCells {
                family,
                qualifier,
                start,
                end,
            } => {
                if let Some(c) = r.get_mut(&(family.clone(), qualifier.clone())) {
                    c.retain(|ts, _| ts < start || ts >= end);
                }
            }
            Mutation::DeleteFamily { family } => r.retain(|(f, _), _| f != family),
            Mutation::DeleteRow => r.clear(),
        }
    }
    r.retain(|_, c| !c.is_empty());
    if r.is_empty() {
        model.remove(row);
    }
}

/// The cells a read of `row` must return: newest first, at most 2 versions in `g`.
fn expected(model: &Model, row: &[u8]) -> Vec<Cell> {
    let mut out = Vec::new();
    if let Some(r) = model.get(row) {
        for ((f, q), versions) in r {
            let keep = if f == "g" { 2 } else { usize::MAX };
            for (ts, v) in versions.iter().rev().take(keep) {
                out.push(Cell {
                    family: f.clone(),
                    qualifier: q.clone(),
                    timestamp: *ts,
                    value: v.clone(),
                });
            }
        }
    }
    out
}

struct Harness {
    fs: sstable::fault::FaultFs,
    tablet: Option<Tablet>,
    opens: u32,
    opts: TabletOptions,
}

impl Harness {
    fn open(&mut self) {
        self.opens += 1;
        let log_dir = format!("logs/srv-{}", self.opens);
        let t = common::open(
            self.fs.shared(),
            Path::new(common::ROOT),
            &log_dir,
            self.opts.clone(),
        )
        .expect("the tablet always opens");
        self.tablet = Some(t);
    }
    fn t(&self) -> &Tablet {
        self.tablet.as_ref().unwrap()
    }
}

fn check_all(h: &Harness, model: &Model) -> Result<(), TestCaseError> {
    let rows: Vec<_> = h
        .t()
        .scan(&RowRange::all(), &ReadFilter::default(), None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let got: Vec<(Vec<u8>, Vec<Cell>)> = rows.into_iter().map(|r| (r.key, r.cells)).collect();
    let want: Vec<(Vec<u8>, Vec<Cell>)> = model
        .keys()
        .map(|k| (k.clone(), expected(model, k)))
        .collect();
    prop_assert_eq!(got, want);
    Ok(())
}

fn run(ops: Vec<Op>, opts: TabletOptions) -> Result<(), TestCaseError> {
    let mut h = Harness {
        fs: common::fault_fs(),
        tablet: None,
        opens: 0,
        opts,
    };
    h.open();
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Mutate(row, muts) => {
                h.t().mutate_row(&row, muts.clone()).unwrap();
                apply(&mut model, &row, &muts);
            }
            Op::Flush => h.t().force_flush().unwrap(),
            Op::Merge => h.t().force_merging_compactions().unwrap(),
            Op::Major => h.t().force_major_compaction().unwrap(),
            Op::Reopen => {
                h.tablet.take().unwrap().close().unwrap();
                h.open();
            }
            Op::PowerCut => {
                h.fs.power_cut();
                drop(h.tablet.take());
                h.open();
            }
            Op::CheckRow(row) => {
                let got = h.t().read_row(&row, &ReadFilter::default()).unwrap();
                let want = expected(&model, &row);
                prop_assert_eq!(got.map(|r| r.cells).unwrap_or_default(), want);
            }
        }
    }
    check_all(&h, &model)?;
    h.fs.power_cut();
    drop(h.tablet.take());
    h.open();
    check_all(&h, &model)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("QUARRY_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn tablet_matches_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        run(ops, common::small_options(false))?;
    }

    /// The same with the leveled policy, at sizes where every level, multi-file outputs,
    /// trivial moves and marker dropping occur.
    #[test]
    fn tablet_matches_model_leveled(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        let mut opts = common::small_options(false);
        opts.leveled = Some(Leveled {
            l0_trigger: 2,
            max_l0_merge: 64,
            base_level_bytes: 2048,
            size_ratio: 2,
            target_file_size: 1024,
            max_levels: 4,
        });
        run(ops, opts)?;
    }
}
