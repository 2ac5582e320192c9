//! Parsing of cbt-style arguments and printing of rows in cbt's layout.
//!
//! A row prints as a line of dashes, the row key, then for each cell
//! `  family:qualifier @ timestamp` and the quoted value on the next line, indented:
//!
//! ```text
//! ----------------------------------------
//! alice
//!   info:email                               @ 2026/11/22-00:40:12.123456
//!     "a@example.com"
//! ```

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use client::{ReadFilter, Row};

/// `key=value` options, each key at most once, only from `allowed`.
pub fn parse_opts(args: &[String], allowed: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a.split_once('=').with_context(|| {
            format!(
                "argument {a:?} is not key=value (allowed: {})",
                allowed.join(", ")
            )
        })?;
        if !allowed.contains(&k) {
            bail!("unknown option {k:?} (allowed: {})", allowed.join(", "));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            bail!("option {k:?} given twice");
        }
    }
    Ok(out)
}

/// A positive count option.
pub fn parse_count(opts: &BTreeMap<String, String>, key: &str) -> anyhow::Result<Option<u64>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) => {
            let n: u64 = v
                .parse()
                .with_context(|| format!("{key}={v:?} is not a number"))?;
            if n == 0 {
                bail!("{key} must be at least 1");
            }
            Ok(Some(n))
        }
    }
}

/// Which columns `columns=f1:q1,f2` asks for: per family, either every qualifier (`None`)
/// or a set of exact qualifiers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Columns(BTreeMap<String, Option<BTreeSet<Vec<u8>>>>);

impl Columns {
    /// Parses `f1:q1,f2,f3:q3` (a bare family or `f:` means all its qualifiers).
    pub fn parse(spec: &str) -> anyhow::Result<Columns> {
        let mut m: BTreeMap<String, Option<BTreeSet<Vec<u8>>>> = BTreeMap::new();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (fam, qual) = match item.split_once(':') {
                Some((f, q)) => (f, (!q.is_empty()).then_some(q)),
                None => (item, None),
            };
            if fam.is_empty() {
                bail!("column {item:?} has no family");
            }
            let slot = m
                .entry(fam.to_string())
                .or_insert_with(|| Some(BTreeSet::new()));
            match (qual, slot.as_mut()) {
                (None, _) => *slot = None,
                (Some(q), Some(set)) => {
                    set.insert(q.as_bytes().to_vec());
                }
                (Some(_), None) => {}
            }
        }
        if m.is_empty() {
            bail!("columns= names no column");
        }
        Ok(Columns(m))
    }

    /// Narrows `f` to these families and (by an anchored alternation) qualifiers. The
    /// server's filter is a conjunction, so it may pass `f1:q2` for `f1:q1,f2:q2`;
    /// [`Columns::keep`] removes those.
    pub fn narrow(&self, f: &mut ReadFilter) -> anyhow::Result<()> {
        f.families = Some(self.0.keys().cloned().collect());
        if self.0.values().all(Option::is_some) {
            let alts: BTreeSet<String> = self
                .0
                .values()
                .flatten()
                .flatten()
                .map(|q| regex::escape(&String::from_utf8_lossy(q)))
                .collect();
            let alts: Vec<String> = alts.into_iter().collect();
            let re = format!("^(?:{})$", alts.join("|"));
            f.qualifier_regex = Some(regex::bytes::Regex::new(&re).context("column regex")?);
        }
        Ok(())
    }

    /// Drops cells outside the requested columns; `None` when nothing is left.
    pub fn keep(&self, mut row: Row) -> Option<Row> {
        row.cells.retain(|c| match self.0.get(&c.family) {
            Some(None) => true,
            Some(Some(qs)) => qs.contains(&c.qualifier),
            None => false,
        });
        (!row.cells.is_empty()).then_some(row)
    }
}

/// A byte string as Go's `%q` prints it (what cbt shows).
pub fn quote(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for chunk in b.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\r' => s.push_str("\\r"),
                c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
                c => s.push(c),
            }
        }
        for byte in chunk.invalid() {
            s.push_str(&format!("\\x{byte:02x}"));
        }
    }
    s.push('"');
    s
}

/// A row key or qualifier for display (lossy UTF-8, escapes for the rest).
pub fn show(b: &[u8]) -> String {
    let q = quote(b);
    let inner = &q[1..q.len() - 1];
    if inner.as_bytes() == b {
        inner.to_string()
    } else {
        q
    }
}

/// A timestamp in microseconds as cbt prints it: `YYYY/MM/DD-HH:MM:SS.uuuuuu` (UTC).
pub fn format_micros(ts: i64) -> String {
    let secs = ts.div_euclid(1_000_000);
    let micros = ts.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}/{m:02}/{d:02}-{:02}:{:02}:{:02}.{micros:06}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Prints a row in cbt's layout.
pub fn print_row(row: &Row) {
    outln!("----------------------------------------");
    outln!("{}", show(&row.key));
    for c in &row.cells {
        let col = format!("{}:{}", c.family, show(&c.qualifier));
        outln!("  {col:<40} @ {}", format_micros(c.timestamp));
        outln!("    {}", quote(&c.value));
    }
}

/// The current wall-clock time in microseconds (cell timestamps are wall-clock by
/// definition; this is not used for any timeout).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::Cell;

    #[test]
    fn timestamps_print_as_utc_calendar_time() {
        assert_eq!(format_micros(0), "1970/01/01-00:00:00.000000");
        assert_eq!(
            format_micros(951_782_400_000_001),
            "2000/02/29-00:00:00.000001"
        );
        assert_eq!(
            format_micros(1_700_000_000_123_456),
            "2023/11/14-22:13:20.123456"
        );
        assert_eq!(format_micros(-1), "1969/12/31-23:59:59.999999");
    }

    #[test]
    fn values_are_quoted_like_go() {
        assert_eq!(quote(b"plain"), "\"plain\"");
        assert_eq!(quote(b"a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(quote(b"\x00\xff"), "\"\\u0000\\xff\"");
        assert_eq!(quote("é".as_bytes()), "\"é\"");
        assert_eq!(show(b"row1"), "row1");
        assert_eq!(show(b"r\xff"), "\"r\\xff\"");
    }

    #[test]
    fn options_are_checked() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse_opts(&args(&["count=3", "start=a"]), &["count", "start"]).unwrap();
        assert_eq!(parse_count(&o, "count").unwrap(), Some(3));
        assert!(parse_opts(&args(&["bogus=1"]), &["count"]).is_err());
        assert!(parse_opts(&args(&["count"]), &["count"]).is_err());
        assert!(parse_opts(&args(&["count=1", "count=2"]), &["count"]).is_err());
        let o = parse_opts(&args(&["count=0"]), &["count"]).unwrap();
        assert!(parse_count(&o, "count").is_err());
    }

    #[test]
    fn columns_narrow_the_server_filter_and_trim_exactly() {
        let cols = Columns::parse("a:x,b:y").unwrap();
        let mut f = ReadFilter::default();
        cols.narrow(&mut f).unwrap();
        assert_eq!(f.families, Some(vec!["a".to_string(), "b".to_string()]));
        let re = f.qualifier_regex.unwrap();
        assert!(re.is_match(b"x") && re.is_match(b"y") && !re.is_match(b"xy"));
        let cell = |f: &str, q: &str| Cell {
            family: f.into(),
            qualifier: q.into(),
            timestamp: 1,
            value: vec![],
        };
        let row = Row {
            key: b"r".to_vec(),
            cells: vec![cell("a", "x"), cell("a", "y"), cell("b", "y")],
        };
        let kept = cols.keep(row).unwrap();
        assert_eq!(kept.cells, vec![cell("a", "x"), cell("b", "y")]);

        let whole = Columns::parse("a,b:y").unwrap();
        let mut f = ReadFilter::default();
        whole.narrow(&mut f).unwrap();
        assert!(
            f.qualifier_regex.is_none(),
            "family a wants every qualifier"
        );
        assert!(Columns::parse(":x").is_err());
    }
}
