//! The handles and the `Fs` implementation of [`FaultFs`] (the model is in the parent
//! module).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    components, eio, os_err, DirNode, Fault, FaultFs, FileNode, Ino, Node, State, ENOSPC, ROOT,
};
use crate::error::{Error, Result};
use crate::fs::{Fs, RandomAccessFile, WritableFile};

struct FaultWritable {
    fs: FaultFs,
    path: PathBuf,
    ino: Ino,
    epoch: u64,
    /// Where the next bytes go when opened with `open_at` (else at the end).
    at: Option<usize>,
}

impl FaultWritable {
    fn with_file<T>(&self, op: &'static str, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut st = self.fs.state.lock();
        if st.epoch != self.epoch || st.file_mut(self.ino).is_none() {
            return Err(eio(op, &self.path));
        }
        f(&mut st)
    }
}

impl WritableFile for FaultWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        let (path, ino, at) = (self.path.clone(), self.ino, self.at);
        let (take, result) = self.with_file("append", |st| {
            let limit = st.space_limit(&path, data.len() as u64);
            let take = limit.map_or(data.len(), |n| n as usize);
            st.counters.bytes_written += take as u64;
            let f = st.file_mut(ino).expect("checked");
            match at {
                Some(at) => f.write_at(at, &data[..take]),
                None => f.data.extend_from_slice(&data[..take]),
            }
            Ok(match limit {
                Some(_) => (take, Err(Error::io("append", &path, os_err(ENOSPC)))),
                None => (take, Ok(())),
            })
        })?;
        if let Some(at) = &mut self.at {
            *at += take;
        }
        result
    }

    fn flush(&mut self) -> Result<()> {
        self.with_file("flush", |_| Ok(()))
    }

    fn sync(&mut self) -> Result<()> {
        let (path, ino) = (self.path.clone(), self.ino);
        self.with_file("sync", |st| {
            if st
                .fire(&path, |f| matches!(f, Fault::SyncFails { .. }))
                .is_some()
            {
                st.file_mut(ino).expect("checked").lose_unsynced();
                return Err(eio("sync", &path));
            }
            st.counters.syncs += 1;
            st.file_mut(ino).expect("checked").sync();
            Ok(())
        })
    }

    fn len(&self) -> u64 {
        if let Some(at) = self.at {
            return at as u64;
        }
        let mut st = self.fs.state.lock();
        st.file_mut(self.ino).map_or(0, |f| f.data.len() as u64)
    }
}

struct FaultRandom {
    fs: FaultFs,
    path: PathBuf,
    ino: Ino,
    epoch: u64,
    len: u64,
}

impl RandomAccessFile for FaultRandom {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.fs.check_epoch(self.epoch, "read", &self.path)?;
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(Error::corruption(
                &self.path,
                offset,
                format!("read of {len} bytes past the end ({} bytes)", self.len),
            ));
        }
        let mut st = self.fs.state.lock();
        let f = st
            .file_mut(self.ino)
            .ok_or_else(|| eio("read", &self.path))?;
        let (start, end) = (offset as usize, offset as usize + len);
        if end > f.data.len() {
            return Err(eio("read", &self.path));
        }
        Ok(f.data[start..end].to_vec())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl FaultFs {
    fn open_writable(
        &self,
        path: &Path,
        truncate: bool,
        at: Option<u64>,
    ) -> Result<Box<dyn WritableFile>> {
        let mut st = self.state.lock();
        let ino = match st.lookup(path)? {
            Some(ino) if st.file_mut(ino).is_some() => {
                if truncate {
                    // O_TRUNC: modelled as durable at once (the old bytes are gone).
                    let f = st.file_mut(ino).expect("checked");
                    f.data.clear();
                    f.durable.clear();
                    f.lost.clear();
                    f.dirty = None;
                }
                ino
            }
            Some(_) => {
                return Err(Error::InvalidArgument(format!(
                    "{} is a directory",
                    path.display()
                )))
            }
            None if truncate => {
                let (parent, name) = st.parent_of(path)?;
                let ino = st.new_node(Node::File(FileNode::default()));
                st.dir_mut(parent).expect("parent").live.insert(name, ino);
                ino
            }
            None => return Err(Error::NotFound(path.display().to_string())),
        };
        Ok(Box::new(FaultWritable {
            fs: self.clone(),
            path: path.to_owned(),
            ino,
            epoch: st.epoch,
            at: at.map(|a| a as usize),
        }))
    }

    fn remove_entry(&self, path: &Path, want_dir: bool) -> Result<()> {
        let mut st = self.state.lock();
        let (parent, name) = st.parent_of(path)?;
        let ino = *st
            .dir(parent)
            .and_then(|d| d.live.get(&name))
            .ok_or_else(|| Error::NotFound(path.display().to_string()))?;
        if st.dir(ino).is_some() != want_dir {
            return Err(Error::InvalidArgument(format!(
                "{} is {}a directory",
                path.display(),
                if want_dir { "not " } else { "" }
            )));
        }
        if want_dir {
            clear_tree(&mut st, ino);
        }
        st.dir_mut(parent).expect("parent").live.remove(&name);
        Ok(())
    }
}

/// Unlinks (in live entries) everything below directory `ino`.
fn clear_tree(st: &mut State, ino: Ino) {
    let children: Vec<Ino> = match st.dir_mut(ino) {
        Some(d) => std::mem::take(&mut d.live).into_values().collect(),
        None => return,
    };
    for child in children {
        clear_tree(st, child);
    }
}

impl Fs for FaultFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.open_writable(path, true, None)
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.open_writable(path, false, None)
    }

    fn open_at(&self, path: &Path, offset: u64) -> Result<Box<dyn WritableFile>> {
        let offset = usize::try_from(offset)
            .map_err(|_| Error::InvalidArgument(format!("offset {offset} too large")))?;
        self.open_writable(path, false, Some(offset as u64))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        let mut st = self.state.lock();
        let ino = st
            .lookup(path)?
            .ok_or_else(|| Error::NotFound(path.display().to_string()))?;
        let epoch = st.epoch;
        let len = match st.file_mut(ino) {
            Some(f) => f.data.len() as u64,
            None => {
                return Err(Error::InvalidArgument(format!(
                    "{} is a directory",
                    path.display()
                )))
            }
        };
        Ok(Arc::new(FaultRandom {
            fs: self.clone(),
            path: path.to_owned(),
            ino,
            epoch,
            len,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut st = self.state.lock();
        if st
            .fire(from, |f| matches!(f, Fault::RenameFails { .. }))
            .is_some()
        {
            return Err(eio("rename", from));
        }
        let (src_dir, src_name) = st.parent_of(from)?;
        let (dst_dir, dst_name) = st.parent_of(to)?;
        let ino = st
            .dir_mut(src_dir)
            .expect("parent")
            .live
            .remove(&src_name)
            .ok_or_else(|| Error::NotFound(from.display().to_string()))?;
        st.dir_mut(dst_dir)
            .expect("parent")
            .live
            .insert(dst_name, ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        self.remove_entry(path, false)
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let mut st = self.state.lock();
        let mut ino = ROOT;
        for name in components(path)? {
            let existing = st.dir(ino).and_then(|d| d.live.get(&name)).copied();
            ino = match existing {
                Some(child) if st.dir(child).is_some() => child,
                Some(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "{name} in {} is a file",
                        path.display()
                    )))
                }
                None => {
                    let child = st.new_node(Node::Dir(DirNode::default()));
                    st.dir_mut(ino).expect("dir").live.insert(name, child);
                    child
                }
            };
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        self.remove_entry(path, true)
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let st = self.state.lock();
        let ino = st
            .lookup(path)?
            .ok_or_else(|| Error::NotFound(path.display().to_string()))?;
        let d = st
            .dir(ino)
            .ok_or_else(|| Error::InvalidArgument(format!("{} is a file", path.display())))?;
        Ok(d.live.keys().cloned().collect())
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        let mut st = self.state.lock();
        if st
            .fire(path, |f| matches!(f, Fault::SyncDirFails { .. }))
            .is_some()
        {
            return Err(eio("sync dir", path));
        }
        let ino = st
            .lookup(path)?
            .ok_or_else(|| Error::NotFound(path.display().to_string()))?;
        let d = st
            .dir_mut(ino)
            .ok_or_else(|| Error::InvalidArgument(format!("{} is a file", path.display())))?;
        d.durable = d.live.clone();
        st.counters.dir_syncs += 1;
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        matches!(self.state.lock().lookup(path), Ok(Some(_)))
    }

    fn file_size(&self, path: &Path) -> Result<u64> {
        let mut st = self.state.lock();
        let ino = st
            .lookup(path)?
            .ok_or_else(|| Error::NotFound(path.display().to_string()))?;
        st.file_mut(ino)
            .map(|f| f.data.len() as u64)
            .ok_or_else(|| Error::InvalidArgument(format!("{} is a directory", path.display())))
    }

    fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        let mut st = self.state.lock();
        let ino = st
            .lookup(path)?
            .ok_or_else(|| Error::NotFound(path.display().to_string()))?;
        let f = st
            .file_mut(ino)
            .ok_or_else(|| Error::InvalidArgument(format!("{} is a directory", path.display())))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > f.data.len() {
            f.data.resize(len, 0);
        }
        f.data.truncate(len);
        f.sync();
        f.durable.truncate(len);
        Ok(())
    }
}
