//! The rules of [`UnsyncedFs`], each checked against what the real directory holds after
//! the process's memory is gone (dropping the file system is `kill -9`: nothing of its
//! state reaches the disk).

use super::*;
use crate::fs::RealFs;

struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    shadow: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let shadow = dir.path().join("shadow");
    Setup {
        data,
        shadow,
        _dir: dir,
    }
}

/// What survives: the real directory read after the process died.
fn on_disk(p: &Path) -> Option<Vec<u8>> {
    std::fs::read(p).ok()
}

#[test]
fn unsynced_appends_are_visible_but_lost_at_the_cut() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let p = s.data.join("log");
    let mut w = fs.create(&p).unwrap();
    fs.sync_dir(&s.data).unwrap();
    w.append(b"acked").unwrap();
    w.sync().unwrap();
    w.append(b"-pending").unwrap();
    w.flush().unwrap();
    assert_eq!(w.len(), 13);
    assert_eq!(fs.read_all(&p).unwrap(), b"acked-pending");
    assert_eq!(fs.file_size(&p).unwrap(), 13);
    assert_eq!(fs.open(&p).unwrap().read_at(3, 6).unwrap(), b"ed-pen");
    assert_eq!(fs.unsynced_bytes(), 8);
    // A second writer of the same file continues after the buffered bytes.
    let mut w2 = fs.open_append(&p).unwrap();
    assert_eq!(w2.len(), 13);
    w2.append(b"!").unwrap();
    assert_eq!(fs.read_all(&p).unwrap(), b"acked-pending!");
    drop((w, w2, fs));
    assert_eq!(on_disk(&p).unwrap(), b"acked");
}

#[test]
fn sync_writes_every_buffered_byte() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let p = s.data.join("f");
    let mut w = fs.create(&p).unwrap();
    for chunk in [&b"one "[..], b"two ", b"three"] {
        w.append(chunk).unwrap();
    }
    w.sync().unwrap();
    fs.sync_dir(&s.data).unwrap();
    assert_eq!(fs.unsynced_bytes(), 0);
    drop((w, fs));
    assert_eq!(on_disk(&p).unwrap(), b"one two three");
}

#[test]
fn a_create_is_lost_until_its_directory_is_synced() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let p = s.data.join("new.sst");
    let mut w = fs.create(&p).unwrap();
    w.append(b"table").unwrap();
    w.sync().unwrap();
    assert!(fs.exists(&p));
    assert_eq!(fs.list_dir(&s.data).unwrap(), vec!["new.sst".to_string()]);
    assert_eq!(fs.read_all(&p).unwrap(), b"table");
    assert!(
        on_disk(&p).is_none(),
        "visible on disk before the directory sync"
    );
    fs.sync_dir(&s.data).unwrap();
    assert_eq!(on_disk(&p).unwrap(), b"table");
    // A second file, synced but its directory not: the cut drops it.
    let q = s.data.join("other.sst");
    let mut w = fs.create(&q).unwrap();
    w.append(b"x").unwrap();
    w.sync().unwrap();
    drop((w, fs));
    assert!(on_disk(&q).is_none());
    assert_eq!(
        RealFs.list_dir(&s.data).unwrap(),
        vec!["new.sst".to_string()]
    );
}

#[test]
fn a_rename_is_undone_by_the_cut_until_its_directory_is_synced() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let cur = s.data.join("CURRENT");
    fs.write_atomic(&cur, b"v1").unwrap();
    // write_atomic without the directory sync: the new content is only in memory.
    let tmp = crate::fs::tmp_path(&cur);
    let mut w = fs.create(&tmp).unwrap();
    w.append(b"v2").unwrap();
    w.sync().unwrap();
    drop(w);
    fs.rename(&tmp, &cur).unwrap();
    assert_eq!(fs.read_all(&cur).unwrap(), b"v2");
    assert!(!fs.exists(&tmp));
    assert_eq!(fs.list_dir(&s.data).unwrap(), vec!["CURRENT".to_string()]);
    assert_eq!(on_disk(&cur).unwrap(), b"v1");
    // Renaming a file that is already real keeps the old name on disk until the sync.
    let moved = s.data.join("MOVED");
    fs.rename(&cur, &moved).unwrap();
    assert!(!fs.exists(&cur));
    assert_eq!(fs.read_all(&moved).unwrap(), b"v2");
    drop(fs);
    assert_eq!(on_disk(&cur).unwrap(), b"v1");
    assert!(on_disk(&moved).is_none());
    assert_eq!(
        RealFs.list_dir(&s.data).unwrap(),
        vec!["CURRENT".to_string()]
    );
}

#[test]
fn a_synced_rename_replaces_the_target() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let a = s.data.join("a");
    let b = s.data.join("b");
    fs.write_atomic(&a, b"A").unwrap();
    fs.write_atomic(&b, b"B").unwrap();
    fs.rename(&a, &b).unwrap();
    fs.sync_dir(&s.data).unwrap();
    drop(fs);
    assert!(on_disk(&a).is_none());
    assert_eq!(on_disk(&b).unwrap(), b"A");
}

#[test]
fn a_remove_is_undone_by_the_cut_until_its_directory_is_synced() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let p = s.data.join("old.log");
    fs.write_atomic(&p, b"log").unwrap();
    fs.remove_file(&p).unwrap();
    assert!(!fs.exists(&p));
    assert!(matches!(fs.open(&p).err().unwrap(), Error::NotFound(_)));
    assert!(matches!(
        fs.remove_file(&p).unwrap_err(),
        Error::NotFound(_)
    ));
    assert_eq!(on_disk(&p).unwrap(), b"log");
    fs.sync_dir(&s.data).unwrap();
    assert!(on_disk(&p).is_none());
    // Created and removed before any sync: nothing ever reaches the directory.
    let q = s.data.join("tmp");
    fs.create(&q).unwrap();
    fs.remove_file(&q).unwrap();
    fs.sync_dir(&s.data).unwrap();
    assert!(RealFs.list_dir(&s.data).unwrap().is_empty());
    assert!(RealFs.list_dir(&s.shadow).unwrap().is_empty());
}

#[test]
fn truncate_is_durable_at_once_and_keeps_buffered_bytes_below_the_cut() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let p = s.data.join("log");
    let mut w = fs.create(&p).unwrap();
    fs.sync_dir(&s.data).unwrap();
    w.append(b"12345").unwrap();
    w.sync().unwrap();
    w.append(b"6789").unwrap();
    fs.truncate(&p, 7).unwrap();
    assert_eq!(fs.read_all(&p).unwrap(), b"1234567");
    fs.truncate(&p, 3).unwrap();
    drop((w, fs));
    assert_eq!(on_disk(&p).unwrap(), b"123");
}

#[test]
fn a_new_incarnation_starts_from_the_disk_and_empties_the_shadow() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let mut w = fs.create(&s.data.join("lost")).unwrap();
    w.append(b"x").unwrap();
    w.sync().unwrap();
    drop((w, fs));
    assert_eq!(RealFs.list_dir(&s.shadow).unwrap().len(), 1);
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    assert!(RealFs.list_dir(&s.shadow).unwrap().is_empty());
    assert!(fs.list_dir(&s.data).unwrap().is_empty());
    assert!(!fs.exists(&s.data.join("lost")));
}

#[test]
fn remove_dir_all_forgets_pending_entries_below_it() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let sub = s.data.join("tablet");
    fs.create_dir_all_durable(&sub).unwrap();
    fs.create(&sub.join("f")).unwrap();
    fs.remove_dir_all(&sub).unwrap();
    assert!(!fs.exists(&sub.join("f")));
    assert!(RealFs.list_dir(&s.shadow).unwrap().is_empty());
    fs.create_dir_all(&sub).unwrap();
    assert!(fs.list_dir(&sub).unwrap().is_empty());
}

/// The inode of a file replaced by a synced rename (or removed with its directory) is
/// free, and the kernel hands its number to the next new file. Buffered-write state kept
/// under the old number must not carry over: it made the next file's first sync write at
/// the old file's length, leaving a hole of zeros where its first bytes belonged (a chaos
/// soak's power cut then found two lock replicas' Raft logs "corrupt at offset 0": the log
/// rewrite created its file just after a snapshot had replaced the old one).
#[test]
fn a_freed_inode_number_reused_by_a_new_file_starts_empty() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let snap = s.data.join("snapshot");
    let tmp = s.data.join("snapshot.tmp");
    let mut checked = 0;
    for round in 0..20u32 {
        // Replace `snapshot` the way the lock replica does: write a temporary file, sync it,
        // rename it over the old one, sync the directory.
        let mut w = fs.create(&tmp).unwrap();
        w.append(&vec![b's'; 1000 + round as usize]).unwrap();
        w.sync().unwrap();
        drop(w);
        let replaced = std::fs::metadata(&snap).ok().map(|m| key_of(&m));
        fs.rename(&tmp, &snap).unwrap();
        fs.sync_dir(&s.data).unwrap();
        if let Some(key) = replaced {
            assert!(
                !fs.st.lock().pending.contains_key(&key),
                "round {round}: state of the replaced inode kept"
            );
        }
        // A new file (often given the freed inode number) holds exactly what was written.
        let p = s.data.join(format!("log-{round}"));
        let mut w = fs.create(&p).unwrap();
        fs.sync_dir(&s.data).unwrap();
        w.append(b"first record").unwrap();
        w.sync().unwrap();
        drop(w);
        let got = on_disk(&p).unwrap();
        assert!(
            got == b"first record",
            "round {round}: {} bytes on disk, starting {:?}",
            got.len(),
            &got[..got.len().min(16)]
        );
        checked += 1;
    }
    assert_eq!(checked, 20);
    // The same after remove_dir_all.
    let sub = s.data.join("tablet");
    fs.create_dir_all_durable(&sub).unwrap();
    let mut w = fs.create(&sub.join("f")).unwrap();
    fs.sync_dir(&sub).unwrap();
    w.append(&[b'x'; 777]).unwrap();
    w.sync().unwrap();
    drop(w);
    let key = key_of(&std::fs::metadata(sub.join("f")).unwrap());
    fs.remove_dir_all(&sub).unwrap();
    assert!(!fs.st.lock().pending.contains_key(&key));
}

#[test]
fn writes_in_place_are_patches_until_sync() {
    let s = setup();
    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let p = s.data.join("log");
    let mut w = fs.create(&p).unwrap();
    fs.sync_dir(&s.data).unwrap();
    w.append(&[0u8; 8]).unwrap();
    w.sync().unwrap();
    // In place over the durable zeros, then past the end.
    let mut w = fs.open_at(&p, 6).unwrap();
    w.append(b"abcd").unwrap();
    assert_eq!(w.len(), 10);
    assert_eq!(fs.read_all(&p).unwrap(), b"\0\0\0\0\0\0abcd");
    assert_eq!(fs.file_size(&p).unwrap(), 10);
    assert_eq!(fs.open(&p).unwrap().read_at(5, 3).unwrap(), b"\0ab");
    drop((w, fs));
    assert_eq!(on_disk(&p).unwrap(), [0u8; 8]);

    let fs = UnsyncedFs::new(&s.shadow).unwrap();
    let mut w = fs.open_at(&p, 2).unwrap();
    w.append(b"xy").unwrap();
    w.sync().unwrap();
    w.append(b"z").unwrap();
    assert_eq!(fs.read_all(&p).unwrap(), b"\0\0xyz\0\0\0");
    drop((w, fs));
    assert_eq!(on_disk(&p).unwrap(), b"\0\0xy\0\0\0\0");
}
