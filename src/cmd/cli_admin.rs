//! The admin commands: `createtable`, `ls`, `createfamily`, `setgcpolicy`, `deletetable`,
//! `tablets`, `servers`, `split`, `compact`, `status` (all through the master).

use anyhow::{bail, Context};
use client::{ColumnFamily, FamilyModification, GcPolicy};

use super::cli::{MaybeTableArgs, NoArgs, RowArgs, TableArgs};
use super::cli_format::{parse_opts, show};

/// `families=f1:maxversions=1,f2` → column families (GC policy checked here, spelled as
/// the master expects).
fn parse_families(spec: &str) -> anyhow::Result<Vec<ColumnFamily>> {
    let mut out: Vec<ColumnFamily> = Vec::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (name, policy) = match item.split_once(':') {
            Some((n, p)) => (n, p),
            None => (item, "never"),
        };
        if name.is_empty() {
            bail!("family {item:?} has no name");
        }
        GcPolicy::parse(policy).with_context(|| format!("GC policy of family {name:?}"))?;
        if out.iter().any(|f| f.name == name) {
            bail!("family {name:?} given twice");
        }
        out.push(ColumnFamily {
            name: name.to_string(),
            gc_policy: policy.to_string(),
            locality_group: String::new(),
        });
    }
    Ok(out)
}

/// `splits=a,m` → split keys (sorted, distinct, non-empty).
fn parse_splits(spec: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut keys: Vec<Vec<u8>> = spec
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    if keys.len() != before {
        bail!("splits= repeats a key");
    }
    Ok(keys)
}

/// `createtable <table> [families=...] [splits=...]`
pub async fn create_table(a: TableArgs) -> anyhow::Result<()> {
    let opts = parse_opts(&a.opts, &["families", "splits"])?;
    let families = match opts.get("families") {
        Some(s) => parse_families(s)?,
        None => Vec::new(),
    };
    let splits = match opts.get("splits") {
        Some(s) => parse_splits(s)?,
        None => Vec::new(),
    };
    let c = a.conn.client()?;
    eprintln!(
        "creating table {} with {} tablet(s)...",
        a.table,
        splits.len() + 1
    );
    let r = c.create_table(&a.table, families, splits).await?;
    eprintln!("created table {} ({} tablets)", a.table, r.tablets.len());
    Ok(())
}

/// `ls [table]`
pub async fn ls(a: MaybeTableArgs) -> anyhow::Result<()> {
    let c = a.conn.client()?;
    match a.table {
        None => {
            for t in c.list_tables().await? {
                outln!("{}", t.name);
            }
        }
        Some(name) => {
            let t = c.get_table(&name).await?;
            outln!("{:<20} GC Policy", "Family Name");
            outln!("{:<20} ---------", "-----------");
            for f in t.families {
                let gc = if f.gc_policy.is_empty() {
                    "never"
                } else {
                    &f.gc_policy
                };
                outln!("{:<20} {gc}", f.name);
            }
        }
    }
    Ok(())
}

/// `createfamily <table> <family>`
pub async fn create_family(a: RowArgs) -> anyhow::Result<()> {
    if !a.rest.is_empty() {
        bail!("createfamily takes a table and a family (set the policy with setgcpolicy)");
    }
    let c = a.conn.client()?;
    let m = FamilyModification {
        kind: Some(client::admin_pb::family_modification::Kind::Create(
            ColumnFamily {
                name: a.row.clone(),
                gc_policy: "never".into(),
                locality_group: String::new(),
            },
        )),
    };
    c.modify_column_families(&a.table, vec![m]).await?;
    Ok(())
}

/// `setgcpolicy <table> <family> <policy words...>`
pub async fn set_gc_policy(a: RowArgs) -> anyhow::Result<()> {
    let policy = a.rest.join(" ");
    if policy.is_empty() {
        bail!("setgcpolicy needs a policy: never | maxversions=N | maxage=D [(and|or) ...]");
    }
    GcPolicy::parse(&policy).with_context(|| format!("GC policy {policy:?}"))?;
    let c = a.conn.client()?;
    let m = FamilyModification {
        kind: Some(client::admin_pb::family_modification::Kind::Update(
            ColumnFamily {
                name: a.row.clone(),
                gc_policy: policy,
                locality_group: String::new(),
            },
        )),
    };
    c.modify_column_families(&a.table, vec![m]).await?;
    Ok(())
}

/// `setinmemory <table> <group> (on | off)`: keeps every SSTable of the group in memory.
pub async fn set_in_memory(a: RowArgs) -> anyhow::Result<()> {
    let on = match a.rest.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["on"] => true,
        ["off"] => false,
        _ => bail!("setinmemory takes a table, a locality group and on | off"),
    };
    let c = a.conn.client()?;
    c.set_locality_group(&a.table, &a.row, on).await?;
    Ok(())
}

/// `deletetable <table>`
pub async fn delete_table(a: TableArgs) -> anyhow::Result<()> {
    if !a.opts.is_empty() {
        bail!("deletetable takes a table only");
    }
    let c = a.conn.client()?;
    c.delete_table(&a.table).await?;
    Ok(())
}

/// `tablets [table]`
pub async fn tablets(a: MaybeTableArgs) -> anyhow::Result<()> {
    let c = a.conn.client()?;
    let ts = c.list_tablets(a.table.as_deref()).await?;
    outln!(
        "{:<16} {:>8} {:<16} {:<16} {:<24} {:>6}",
        "TABLE",
        "TABLET",
        "START",
        "END",
        "SERVER",
        "EPOCH"
    );
    for t in ts {
        let server = if t.server_addr.is_empty() {
            "(unassigned)".to_string()
        } else {
            t.server_addr.clone()
        };
        let end = if t.end.is_empty() {
            "(end)".to_string()
        } else {
            show(&t.end)
        };
        let start = if t.start.is_empty() {
            "(start)".to_string()
        } else {
            show(&t.start)
        };
        outln!(
            "{:<16} {:>8} {:<16} {:<16} {:<24} {:>6}",
            t.table,
            t.tablet_id,
            start,
            end,
            server,
            t.epoch
        );
    }
    Ok(())
}

/// `servers`
pub async fn servers(a: NoArgs) -> anyhow::Result<()> {
    let c = a.conn.client()?;
    outln!("{:<32} {:<24} {:>8}", "SERVER", "ADDRESS", "TABLETS");
    for s in c.list_servers().await? {
        outln!("{:<32} {:<24} {:>8}", s.id, s.addr, s.tablets);
    }
    Ok(())
}

/// `split <table> <row>`
pub async fn split(a: RowArgs) -> anyhow::Result<()> {
    if !a.rest.is_empty() {
        bail!("split takes a table and a row only");
    }
    let c = a.conn.client()?;
    eprintln!("splitting the tablet of {} holding {}...", a.table, a.row);
    let (l, r) = c.split_tablet(&a.table, a.row.as_bytes()).await?;
    outln!(
        "split into tablet {} [{}, {}) and tablet {} [{}, {})",
        l.tablet_id,
        show(&l.start),
        show(&l.end),
        r.tablet_id,
        show(&r.start),
        show(&r.end)
    );
    Ok(())
}

/// `compact <table> [major]`
pub async fn compact(a: TableArgs) -> anyhow::Result<()> {
    let major = match a.opts.as_slice() {
        [] => false,
        [m] if m == "major" => true,
        _ => bail!("compact takes a table and optionally `major`"),
    };
    let c = a.conn.client()?;
    let kind = if major { "major" } else { "minor" };
    eprintln!(
        "asking every tablet of {} for a {kind} compaction...",
        a.table
    );
    let n = c.compact_table(&a.table, major).await?;
    outln!("{n} tablet(s) compacted ({kind})");
    Ok(())
}

/// `status`
pub async fn status(a: NoArgs) -> anyhow::Result<()> {
    let c = a.conn.client()?;
    let s = c.status().await?;
    outln!(
        "master      {} at {} (lock generation {})",
        s.master_id,
        s.master_addr,
        s.lock_generation
    );
    outln!("tables      {}", s.tables);
    outln!("tablets     {} ({} unassigned)", s.tablets, s.unassigned);
    outln!("servers     {}", s.servers.len());
    for srv in s.servers {
        outln!("  {:<30} {:<22} {} tablets", srv.id, srv.addr, srv.tablets);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_take_cbt_gc_policies() {
        let f = parse_families("a:maxversions=1,b,c:maxage=1d or maxversions=2").unwrap();
        let got: Vec<(&str, &str)> = f
            .iter()
            .map(|f| (f.name.as_str(), f.gc_policy.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "maxversions=1"),
                ("b", "never"),
                ("c", "maxage=1d or maxversions=2")
            ]
        );
        assert!(parse_families("a:maxversions=0").is_err());
        assert!(parse_families("a,a").is_err());
        assert!(parse_families(":never").is_err());
    }

    #[test]
    fn splits_are_sorted_and_distinct() {
        assert_eq!(parse_splits("m,a").unwrap(), [b"a".to_vec(), b"m".to_vec()]);
        assert!(parse_splits("a,a").is_err());
    }
}
