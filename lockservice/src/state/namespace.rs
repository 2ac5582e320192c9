//! The namespace half of the state machine: paths, files, directories, ephemeral nodes.
//!
//! Paths are absolute and `/`-separated (`/quarry/servers/ts-1`); the root `/` always
//! exists. A name is 1..=255 bytes without `/` or NUL and is not `.` or `..`; a whole path
//! is at most [`MAX_PATH`] bytes. File content is at most [`MAX_CONTENT`] bytes, checked
//! by the server before it copies a request into a command and again by `apply`.

use super::{Event, LockState, Node, NodeMeta, Reply, Sequencer, SessionId};
use crate::error::{Error, Result};

/// Largest file content: 256 KiB.
pub const MAX_CONTENT: usize = 256 * 1024;
/// Longest path in bytes.
pub const MAX_PATH: usize = 1024;
/// Longest name (one path component) in bytes.
const MAX_NAME: usize = 255;

/// Checks that `path` is a well-formed absolute path.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidArgument(format!("path {path:?}: {why}")));
    if path.len() > MAX_PATH {
        return bad(&format!("longer than {MAX_PATH} bytes"));
    }
    if !path.starts_with('/') {
        return bad("not absolute (must start with '/')");
    }
    if path == "/" {
        return Ok(());
    }
    for name in path[1..].split('/') {
        if name.is_empty() {
            return bad("empty component (double or trailing '/')");
        }
        if name == "." || name == ".." {
            return bad("'.' and '..' are not allowed");
        }
        if name.len() > MAX_NAME {
            return bad(&format!("component longer than {MAX_NAME} bytes"));
        }
        if name.contains('\0') {
            return bad("contains NUL");
        }
    }
    Ok(())
}

/// The parent directory and the last name of a valid path other than `/`.
pub fn parent_of(path: &str) -> (&str, &str) {
    let i = path.rfind('/').expect("validated path has a '/'");
    let parent = if i == 0 { "/" } else { &path[..i] };
    (parent, &path[i + 1..])
}

fn check_content(content: &[u8]) -> Result<()> {
    if content.len() > MAX_CONTENT {
        return Err(Error::InvalidArgument(format!(
            "content of {} bytes exceeds the {MAX_CONTENT}-byte limit",
            content.len()
        )));
    }
    Ok(())
}

impl Node {
    pub(super) fn new(
        is_dir: bool,
        instance: u64,
        content: Vec<u8>,
        owner: Option<SessionId>,
    ) -> Node {
        Node {
            is_dir,
            instance,
            content_generation: 1,
            lock_generation: 0,
            ephemeral_owner: owner,
            content,
            children: Default::default(),
            lock: Default::default(),
        }
    }

    fn meta(&self, path: &str) -> NodeMeta {
        NodeMeta {
            path: path.to_string(),
            is_dir: self.is_dir,
            instance: self.instance,
            content_generation: self.content_generation,
            lock_generation: self.lock_generation,
            ephemeral_owner: self.ephemeral_owner,
            len: self.content.len() as u64,
        }
    }
}

impl LockState {
    pub(super) fn create(
        &mut self,
        path: &str,
        dir: bool,
        content: &[u8],
        owner: Option<SessionId>,
        events: &mut Vec<Event>,
    ) -> Result<Reply> {
        validate_path(path)?;
        check_content(content)?;
        if dir && !content.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "directory {path} cannot have content"
            )));
        }
        if let Some(s) = owner {
            self.live_session(s)?;
        }
        if self.nodes.contains_key(path) {
            return Err(Error::AlreadyExists(path.to_string()));
        }
        let (parent, name) = parent_of(path);
        let p = self
            .nodes
            .get(parent)
            .ok_or_else(|| Error::NotFound(format!("parent directory {parent}")))?;
        if !p.is_dir {
            return Err(Error::FailedPrecondition(format!(
                "{parent} is not a directory"
            )));
        }
        if p.ephemeral_owner.is_some() && p.ephemeral_owner != owner {
            return Err(Error::FailedPrecondition(format!(
                "{parent} is ephemeral: its children must be ephemeral nodes of the same session"
            )));
        }
        let instance = self.next_instance;
        self.next_instance += 1;
        let node = Node::new(dir, instance, content.to_vec(), owner);
        let meta = node.meta(path);
        self.nodes.insert(path.to_string(), node);
        self.nodes
            .get_mut(parent)
            .expect("parent checked above")
            .children
            .insert(name.to_string());
        if let Some(s) = owner {
            let info = self.sessions.get_mut(&s).expect("session checked above");
            info.ephemerals.insert(path.to_string());
        }
        events.push(Event::ChildAdded {
            parent: parent.to_string(),
            name: name.to_string(),
        });
        if !dir {
            events.push(Event::ContentChanged {
                path: path.to_string(),
                content_generation: 1,
            });
        }
        Ok(Reply::Node(meta))
    }

    pub(super) fn write(
        &mut self,
        path: &str,
        content: &[u8],
        expected: Option<u64>,
        fence: Option<&Sequencer>,
        events: &mut Vec<Event>,
    ) -> Result<Reply> {
        validate_path(path)?;
        check_content(content)?;
        if let Some(seq) = fence {
            self.check_sequencer(seq)?;
        }
        let node = self.node(path)?;
        if node.is_dir {
            return Err(Error::FailedPrecondition(format!("{path} is a directory")));
        }
        if let Some(want) = expected {
            if node.content_generation != want {
                return Err(Error::FailedPrecondition(format!(
                    "{path}: content generation is {}, expected {want}",
                    node.content_generation
                )));
            }
        }
        let node = self.nodes.get_mut(path).expect("checked above");
        node.content = content.to_vec();
        node.content_generation += 1;
        events.push(Event::ContentChanged {
            path: path.to_string(),
            content_generation: node.content_generation,
        });
        Ok(Reply::Node(node.meta(path)))
    }

    pub(super) fn delete(
        &mut self,
        path: &str,
        fence: Option<&Sequencer>,
        events: &mut Vec<Event>,
    ) -> Result<Reply> {
        validate_path(path)?;
        if path == "/" {
            return Err(Error::InvalidArgument("cannot delete the root".into()));
        }
        if let Some(seq) = fence {
            self.check_sequencer(seq)?;
        }
        let node = self.node(path)?;
        if !node.children.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "directory {path} is not empty"
            )));
        }
        self.remove_node(path, events);
        Ok(Reply::Done)
    }

    /// Removes a childless node, its lock holdings and its ephemeral registration.
    pub(super) fn remove_node(&mut self, path: &str, events: &mut Vec<Event>) {
        let Some(node) = self.nodes.get(path) else {
            return;
        };
        debug_assert!(node.children.is_empty(), "removing non-empty {path}");
        let mut holders: Vec<SessionId> = node.lock.shared.keys().copied().collect();
        holders.extend(node.lock.exclusive.map(|(s, _)| s));
        for s in holders {
            self.drop_holding(s, path, false, events);
            if let Some(info) = self.sessions.get_mut(&s) {
                info.locks.remove(path);
            }
        }
        let node = self.nodes.remove(path).expect("present above");
        if let Some(owner) = node.ephemeral_owner {
            if let Some(info) = self.sessions.get_mut(&owner) {
                info.ephemerals.remove(path);
            }
        }
        let (parent, name) = parent_of(path);
        if let Some(p) = self.nodes.get_mut(parent) {
            p.children.remove(name);
        }
        events.push(Event::Deleted {
            path: path.to_string(),
        });
        events.push(Event::ChildRemoved {
            parent: parent.to_string(),
            name: name.to_string(),
        });
    }

    pub(super) fn node(&self, path: &str) -> Result<&Node> {
        self.nodes
            .get(path)
            .ok_or_else(|| Error::NotFound(path.to_string()))
    }

    /// A file's content and metadata.
    pub fn read(&self, path: &str) -> Result<(Vec<u8>, NodeMeta)> {
        validate_path(path)?;
        let node = self.node(path)?;
        Ok((node.content.clone(), node.meta(path)))
    }

    /// A node's metadata.
    pub fn stat(&self, path: &str) -> Result<NodeMeta> {
        validate_path(path)?;
        Ok(self.node(path)?.meta(path))
    }

    /// A directory's children, in name order, with their metadata.
    pub fn list(&self, path: &str) -> Result<Vec<NodeMeta>> {
        validate_path(path)?;
        let node = self.node(path)?;
        if !node.is_dir {
            return Err(Error::FailedPrecondition(format!(
                "{path} is not a directory"
            )));
        }
        let base = if path == "/" { "" } else { path };
        Ok(node
            .children
            .iter()
            .map(|name| {
                let child = format!("{base}/{name}");
                self.nodes[&child].meta(&child)
            })
            .collect())
    }
}

#[cfg(test)]
pub(super) fn check_tree(s: &LockState) {
    for (path, node) in &s.nodes {
        if path == "/" {
            continue;
        }
        let (parent, name) = parent_of(path);
        let p = &s.nodes[parent];
        assert!(p.is_dir, "{parent} holds {path} but is a file");
        assert!(p.children.contains(name), "{parent} does not list {name}");
        if let Some(owner) = p.ephemeral_owner {
            assert_eq!(node.ephemeral_owner, Some(owner), "{path} under ephemeral");
        }
        if let Some(owner) = node.ephemeral_owner {
            assert!(s.sessions[&owner].ephemerals.contains(path));
        }
        assert!(node.instance < s.next_instance);
    }
    for (path, node) in &s.nodes {
        let base = if path == "/" { "" } else { path.as_str() };
        for c in &node.children {
            assert!(s.nodes.contains_key(&format!("{base}/{c}")), "{path}/{c}");
        }
    }
}
