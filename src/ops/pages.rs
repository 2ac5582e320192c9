//! The HTML status pages (no JavaScript; reload to refresh).
//!
//! - tablet server: registration and lease, commit log (group commit), block cache, and
//!   every served tablet with its range, epoch, size, SSTables per level and memtable;
//! - master: active or standby, the master-lock holder, servers (address, id, tablets),
//!   tablets with their server and epoch, recent assignments, moves, splits and GC;
//! - lock replica: role, term, leader, members, sessions and locks.
//!
//! Every value from the cluster (row keys, ids, addresses) is HTML-escaped; row keys are
//! shown as the CLI shows them (`cli_format::show`).

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use lockservice::server::ReplicaView;
use master::MasterView;
use tablet::server::ServerView;

use crate::cmd::cli_format::show;

/// `s` with the HTML special characters escaped.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A row key for a page (`(end)` for the empty end key, `(start)` for the empty start).
fn key(b: &[u8], empty: &str) -> String {
    if b.is_empty() {
        empty.to_string()
    } else {
        esc(&show(b))
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #bbb;padding:2px 6px;text-align:left}}</style></head>\
         <body><h1>{t}</h1>{body}<p><a href=\"/metrics\">/metrics</a></p></body></html>",
        t = esc(title)
    )
}

/// A table with header `head` and pre-escaped cells `rows`.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut o = String::from("<table><tr>");
    for h in head {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr>");
    for r in rows {
        o.push_str("<tr>");
        for c in r {
            let _ = write!(o, "<td>{c}</td>");
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
    o
}

/// The tablet server's page.
pub fn tablet(view: Option<&ServerView>) -> String {
    let Some(view) = view else {
        return page(
            "Quarry tablet server",
            "<p>starting: not registered yet</p>",
        );
    };
    let s = view.status();
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>id <b>{}</b> at {} &middot; {} &middot; lease remaining {:.2} s &middot; \
         master generation {}</p>",
        esc(&s.id),
        esc(&s.addr),
        if s.serving { "serving" } else { "NOT serving" },
        s.lease_remaining.as_secs_f64(),
        s.master_generation
    );
    let per_batch = s.log.records as f64 / s.log.batches.max(1) as f64;
    let _ = write!(
        b,
        "<p>commit log: {} records in {} batches ({per_batch:.1} per batch, max {}), \
         {} fsyncs, {} bytes &middot; block cache: {} hits, {} misses, {} of {} bytes \
         &middot; compactions running: {}</p>",
        s.log.records,
        s.log.batches,
        s.log.max_batch,
        s.log.syncs,
        s.log.bytes,
        s.cache_hits,
        s.cache_misses,
        s.cache_used,
        s.cache_capacity,
        s.compactions_running
    );
    let rows: Vec<Vec<String>> = s
        .tablets
        .iter()
        .map(|t| {
            let st = &t.stats;
            vec![
                t.tablet_id.to_string(),
                esc(&t.table),
                key(&t.start, "(start)"),
                key(&t.end, "(end)"),
                t.epoch.to_string(),
                st.sst_bytes.to_string(),
                format!("{:?}", st.sstables_per_level),
                st.memtable_bytes.to_string(),
                format!("{} / {}", st.flushes, st.compactions),
                if t.busy { "split/unload" } else { "" }.to_string(),
            ]
        })
        .collect();
    let _ = write!(b, "<h2>Tablets ({})</h2>", rows.len());
    b.push_str(&table(
        &[
            "tablet",
            "table",
            "start",
            "end",
            "epoch",
            "SSTable bytes",
            "SSTables per level",
            "memtable bytes",
            "flushes / compactions",
            "busy",
        ],
        &rows,
    ));
    page("Quarry tablet server", &b)
}

/// The master's page; `holder` is the master-lock file's content (the active master).
pub fn master(view: Option<&MasterView>, holder: Option<String>) -> String {
    let Some(view) = view else {
        return page(
            "Quarry master",
            "<p>starting: no lock-service session yet</p>",
        );
    };
    let s = view.status();
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>id <b>{}</b> at {} &middot; {} &middot; master lock held by <b>{}</b></p>",
        esc(&s.id),
        esc(&s.addr),
        if s.active {
            format!("ACTIVE (lock generation {})", s.lock_generation)
        } else {
            "standby".to_string()
        },
        esc(holder.as_deref().unwrap_or("(nobody)"))
    );
    match &s.snapshot {
        None => b.push_str("<p>no view yet (standby, or taking over)</p>"),
        Some(snap) => master_view(&mut b, snap),
    }
    let rows: Vec<Vec<String>> = s
        .events
        .iter()
        .rev()
        .map(|e| {
            let at = e.at.duration_since(UNIX_EPOCH).unwrap_or_default();
            vec![
                crate::cmd::cli_format::format_micros(at.as_micros() as i64),
                e.kind.name().to_string(),
                esc(&e.what),
            ]
        })
        .collect();
    b.push_str("<h2>Recent assignments, moves, splits, compactions, garbage collection</h2>");
    b.push_str(&table(&["when (UTC)", "kind", "what"], &rows));
    page("Quarry master", &b)
}

fn master_view(b: &mut String, snap: &master::status::Snapshot) {
    let servers: Vec<Vec<String>> = snap
        .servers
        .iter()
        .map(|(id, addr)| {
            let load = snap.load.get(id).copied().unwrap_or(0);
            vec![esc(addr), esc(id), load.to_string()]
        })
        .collect();
    let _ = write!(b, "<h2>Tablet servers ({})</h2>", servers.len());
    b.push_str(&table(&["address", "id", "tablets"], &servers));
    let _ = write!(
        b,
        "<h2>Tablets ({}: {} assigned, {} waiting)</h2>",
        snap.tablets.len(),
        snap.assigned,
        snap.unassigned
    );
    let mut rows = Vec::new();
    for r in snap.root.iter().chain(snap.tablets.iter()) {
        let table = snap
            .tables
            .get(&r.table_id)
            .map(|n| esc(n))
            .unwrap_or_else(|| "METADATA".to_string());
        rows.push(vec![
            table,
            r.tablet_id.to_string(),
            key(&r.start, "(start)"),
            key(&r.end, "(end)"),
            esc(&r.server_id),
            esc(&r.server_addr),
            r.epoch.to_string(),
        ]);
    }
    b.push_str(&table(
        &[
            "table", "tablet", "start", "end", "server", "address", "epoch",
        ],
        &rows,
    ));
}

/// A lock replica's page.
pub fn lock(view: Option<&ReplicaView>) -> String {
    let Some(view) = view else {
        return page("Quarry lock replica", "<p>starting</p>");
    };
    let s = view.status();
    let leader = match s.leader {
        Some(l) => format!(
            "{l} ({})",
            esc(s.members.get(&l).map(String::as_str).unwrap_or("?"))
        ),
        None => "none known".to_string(),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>replica <b>{}</b> &middot; role <b>{}</b> &middot; term {} &middot; leader {} \
         &middot; log index {} &middot; applied index {}</p><p>{} sessions, {} locks held</p>",
        s.id,
        esc(&s.role),
        s.term,
        leader,
        s.last_log_index,
        s.applied_index,
        s.sessions,
        s.locks_held
    );
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|(id, addr)| vec![id.to_string(), esc(addr)])
        .collect();
    b.push_str("<h2>Members</h2>");
    b.push_str(&table(&["id", "address"], &rows));
    page("Quarry lock replica", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn binary_keys_are_shown_escaped() {
        assert_eq!(key(b"", "(end)"), "(end)");
        assert_eq!(key(b"row<1>", "(start)"), "row&lt;1&gt;");
        assert_eq!(key(b"\x00\xff", "(start)"), "&quot;\\u0000\\xff&quot;");
    }
}
