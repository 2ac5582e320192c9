//! The master's use of the lock-service namespace: its directories, the tablet-server
//! files, table files, the root-tablet file and the id counter.
//!
//! Every change the master makes here is fenced with its sequencer where the lock service
//! allows it (`write` and `delete` take a fence; `create` does not, so the master creates
//! a file and then writes its content fenced).

use lockservice::client::Client;
use lockservice::state::Sequencer;
use lockservice::Error as LErr;
use tablet::meta::{
    ServerInfo, TableInfo, TabletRecord, MASTER_LOCK_PATH, ROOT_TABLET_PATH, SERVERS_DIR,
    TABLES_DIR,
};

use crate::error::{Error, Result};

/// Largest lock-service file the master parses.
pub const MAX_FILE: usize = 256 << 10;

/// Creates `/quarry`, the servers and tables directories and the master-lock file if
/// they are missing (racing creators are fine).
pub async fn ensure_layout(c: &Client) -> Result<()> {
    for dir in ["/quarry", SERVERS_DIR, TABLES_DIR] {
        ignore_exists(c.create(dir, true, b"").await)?;
    }
    ignore_exists(c.create(MASTER_LOCK_PATH, false, b"").await)?;
    Ok(())
}

fn ignore_exists<T>(r: lockservice::Result<T>) -> Result<()> {
    match r {
        Ok(_) | Err(LErr::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One server file: its path, content and lock generation (0: never locked yet).
pub struct ServerFile {
    /// Absolute path.
    pub path: String,
    /// Parsed content.
    pub info: ServerInfo,
    /// Generation of the newest acquisition of its lock.
    pub lock_generation: u64,
}

/// Every file in `/quarry/servers/` whose content parses (others are logged and skipped).
pub async fn list_servers(c: &Client) -> Result<Vec<ServerFile>> {
    let mut out = Vec::new();
    for m in c.list(SERVERS_DIR).await? {
        if m.is_dir {
            continue;
        }
        let (content, meta) = match c.read(&m.path).await {
            Ok(x) => x,
            Err(LErr::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<ServerInfo>(&content) {
            Ok(info) => out.push(ServerFile {
                path: m.path.clone(),
                info,
                lock_generation: meta.lock_generation,
            }),
            Err(e) => tracing::warn!(path = %m.path, "unreadable server file: {e}"),
        }
    }
    Ok(out)
}

/// Every table file.
pub async fn list_tables(c: &Client) -> Result<Vec<TableInfo>> {
    let mut out = Vec::new();
    for m in c.list(TABLES_DIR).await? {
        let (content, _) = match c.read(&m.path).await {
            Ok(x) => x,
            Err(LErr::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let t: TableInfo = serde_json::from_slice(&content).map_err(|e| Error::Corruption {
            what: format!("table file {}: {e}", m.path),
        })?;
        out.push(t);
    }
    Ok(out)
}

/// The path of table `name`'s file.
pub fn table_path(name: &str) -> String {
    format!("{TABLES_DIR}/{name}")
}

/// Creates table `t`'s file (`AlreadyExists` when the name is taken), then writes its
/// content fenced.
pub async fn create_table_file(c: &Client, t: &TableInfo, fence: &Sequencer) -> Result<()> {
    let json = serde_json::to_vec(t).expect("table info serializes");
    c.create(&table_path(&t.name), false, b"").await?;
    c.write(&table_path(&t.name), &json, None, Some(fence))
        .await?;
    Ok(())
}

/// Replaces table `t`'s file content (fenced).
pub async fn write_table_file(c: &Client, t: &TableInfo, fence: &Sequencer) -> Result<()> {
    let json = serde_json::to_vec(t).expect("table info serializes");
    c.write(&table_path(&t.name), &json, None, Some(fence))
        .await?;
    Ok(())
}

/// The root-tablet file's record, if the file exists and is not empty.
pub async fn read_root(c: &Client) -> Result<Option<TabletRecord>> {
    match c.read(ROOT_TABLET_PATH).await {
        Ok((content, _)) if content.is_empty() => Ok(None),
        Ok((content, _)) => {
            TabletRecord::from_json(&content)
                .map(Some)
                .map_err(|e| Error::Corruption {
                    what: format!("{ROOT_TABLET_PATH}: {e}"),
                })
        }
        Err(LErr::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the root-tablet file (fenced), creating it first if needed.
pub async fn write_root(c: &Client, rec: &TabletRecord, fence: &Sequencer) -> Result<()> {
    ignore_exists(c.create(ROOT_TABLET_PATH, false, b"").await)?;
    c.write(ROOT_TABLET_PATH, &rec.to_json(), None, Some(fence))
        .await?;
    Ok(())
}

/// Allocates `n` consecutive ids from the counter file (see [`tablet::meta::allocate_ids`],
/// shared with the tablet servers' splits); returns the first. Ids start at 1.
pub async fn allocate_ids(c: &Client, n: u64, fence: &Sequencer) -> Result<u64> {
    tablet::meta::allocate_ids(c, n, fence)
        .await
        .map_err(|e| match e {
            LErr::Corruption { what, .. } => Error::Corruption { what },
            e => e.into(),
        })
}
