//! The data commands: `set`, `lookup`, `read`, `count`, `deleterow`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use client::{prefix_range, Mutation, ReadFilter, RowRange};

use super::cli::{RowArgs, TableArgs};
use super::cli_format::{now_micros, parse_count, parse_opts, print_row, Columns};

/// One `family:qualifier[@ts]=value` argument of `set`. Without `@ts` the cell gets this
/// machine's clock, so the write is idempotent and safe to retry.
fn parse_cell(arg: &str, now: i64) -> anyhow::Result<Mutation> {
    let (col, value) = arg
        .split_once('=')
        .with_context(|| format!("{arg:?} is not family:qualifier[@timestamp]=value"))?;
    let (col, ts) = match col.rsplit_once('@') {
        Some((c, t)) => {
            let ts: i64 = t
                .parse()
                .with_context(|| format!("timestamp {t:?} in {arg:?} is not microseconds"))?;
            if ts < 0 {
                bail!("timestamp {ts} in {arg:?} is negative");
            }
            (c, ts)
        }
        None => (col, now),
    };
    let (family, qualifier) = col
        .split_once(':')
        .with_context(|| format!("{col:?} in {arg:?} is not family:qualifier"))?;
    if family.is_empty() {
        bail!("{arg:?} has an empty family");
    }
    Ok(Mutation::set(
        family,
        qualifier.as_bytes(),
        ts,
        value.as_bytes(),
    ))
}

/// `set <table> <row> family:qualifier[@ts]=value ...`
pub async fn set(a: RowArgs) -> anyhow::Result<()> {
    if a.rest.is_empty() {
        bail!("set needs at least one family:qualifier=value");
    }
    let now = now_micros();
    let muts = a
        .rest
        .iter()
        .map(|s| parse_cell(s, now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let c = a.conn.client()?;
    c.mutate_row(&a.table, a.row.as_bytes(), muts).await?;
    Ok(())
}

/// The filter of `columns=` and `cells-per-column=`.
fn filter_of(
    opts: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<(ReadFilter, Option<Columns>)> {
    let mut f = ReadFilter::default();
    if let Some(n) = parse_count(opts, "cells-per-column")? {
        f.versions_per_column = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let cols = match opts.get("columns") {
        Some(spec) => {
            let c = Columns::parse(spec)?;
            c.narrow(&mut f)?;
            Some(c)
        }
        None => None,
    };
    Ok((f, cols))
}

/// `lookup <table> <row> [columns=...] [cells-per-column=N]`
pub async fn lookup(a: RowArgs) -> anyhow::Result<()> {
    let opts = parse_opts(&a.rest, &["columns", "cells-per-column"])?;
    let (filter, cols) = filter_of(&opts)?;
    let c = a.conn.client()?;
    let row = c.read_row(&a.table, a.row.as_bytes(), &filter).await?;
    let row = match (row, &cols) {
        (Some(r), Some(cols)) => cols.keep(r),
        (r, _) => r,
    };
    if let Some(r) = row {
        print_row(&r);
    }
    Ok(())
}

/// The row range of `start=`, `end=`, `prefix=`.
fn range_of(opts: &std::collections::BTreeMap<String, String>) -> anyhow::Result<RowRange> {
    if let Some(p) = opts.get("prefix") {
        if opts.contains_key("start") || opts.contains_key("end") {
            bail!("prefix= cannot be combined with start= or end=");
        }
        return Ok(prefix_range(p.as_bytes()));
    }
    let start = opts.get("start").map(String::as_bytes).unwrap_or(b"");
    let end = opts.get("end").map(String::as_bytes).unwrap_or(b"");
    if !end.is_empty() && start >= end {
        bail!("start= must be below end=");
    }
    Ok(RowRange::new(start, end))
}

/// `read <table> [start=] [end=] [prefix=] [columns=] [count=] [cells-per-column=]`
pub async fn read(a: TableArgs) -> anyhow::Result<()> {
    let opts = parse_opts(
        &a.opts,
        &[
            "start",
            "end",
            "prefix",
            "columns",
            "count",
            "cells-per-column",
        ],
    )?;
    let range = range_of(&opts)?;
    let (filter, cols) = filter_of(&opts)?;
    let limit = parse_count(&opts, "count")?.unwrap_or(0);
    let c = a.conn.client()?;
    // With columns= trimming rows client-side, the server's limit could count rows the
    // trim removes; count here instead.
    let server_limit = if cols.is_some() { 0 } else { limit };
    let mut rows = c.read_rows(&a.table, range, &filter, server_limit);
    let mut printed = 0u64;
    while let Some(r) = rows.next_row().await {
        let r = r?;
        let r = match &cols {
            Some(cols) => match cols.keep(r) {
                Some(r) => r,
                None => continue,
            },
            None => r,
        };
        print_row(&r);
        printed += 1;
        if limit > 0 && printed >= limit {
            break;
        }
    }
    Ok(())
}

/// `count <table> [start=] [end=] [prefix=]`; shows progress on a terminal.
pub async fn count(a: TableArgs) -> anyhow::Result<()> {
    let opts = parse_opts(&a.opts, &["start", "end", "prefix"])?;
    let range = range_of(&opts)?;
    let filter = ReadFilter {
        cells_per_row: Some(1),
        strip_value: true,
        ..ReadFilter::default()
    };
    let c = a.conn.client()?;
    let mut rows = c.read_rows(&a.table, range, &filter, 0);
    let progress = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let mut n = 0u64;
    while let Some(r) = rows.next_row().await {
        r?;
        n += 1;
        if progress && last.elapsed() >= Duration::from_secs(1) {
            eprint!("\rcounted {n} rows...");
            last = Instant::now();
        }
    }
    if progress && n > 0 {
        eprint!("\r                                        \r");
    }
    outln!("{n}");
    Ok(())
}

/// `deleterow <table> <row>`
pub async fn delete_row(a: RowArgs) -> anyhow::Result<()> {
    if !a.rest.is_empty() {
        bail!("deleterow takes a table and a row only");
    }
    let c = a.conn.client()?;
    c.mutate_row(&a.table, a.row.as_bytes(), vec![Mutation::DeleteRow])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_parse_with_and_without_timestamps() {
        assert_eq!(
            parse_cell("f:q=v=w", 7).unwrap(),
            Mutation::set("f", b"q", 7, b"v=w")
        );
        assert_eq!(
            parse_cell("f:q@42=v", 7).unwrap(),
            Mutation::set("f", b"q", 42, b"v")
        );
        assert_eq!(
            parse_cell("f:=", 7).unwrap(),
            Mutation::set("f", b"", 7, b"")
        );
        for bad in ["f", "fq=v", ":q=v", "f:q@x=v", "f:q@-5=v"] {
            assert!(parse_cell(bad, 7).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_from_options() {
        let o = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert_eq!(range_of(&o(&[])).unwrap(), RowRange::all());
        assert_eq!(
            range_of(&o(&[("prefix", "ab")])).unwrap(),
            RowRange::new(b"ab", b"ac")
        );
        assert_eq!(
            range_of(&o(&[("start", "b"), ("end", "d")])).unwrap(),
            RowRange::new(b"b", b"d")
        );
        assert!(range_of(&o(&[("start", "d"), ("end", "b")])).is_err());
        assert!(range_of(&o(&[("prefix", "a"), ("end", "b")])).is_err());
    }
}
