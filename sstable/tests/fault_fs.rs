//! The durability rules of `FaultFs`, one test per rule (see the module doc of
//! `sstable::fault`).

use std::path::Path;

use sstable::{Error, Fault, FaultFs, Fs};

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// A file system with `/d` created and durable.
fn fs_with_dir() -> FaultFs {
    let fs = FaultFs::new();
    fs.create_dir_all(p("/d")).unwrap();
    fs.sync_dir(p("/")).unwrap();
    fs
}

fn os_code(e: &Error) -> Option<i32> {
    match e {
        Error::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

#[test]
fn synced_bytes_survive_a_power_cut_and_unsynced_bytes_do_not() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/f")).unwrap();
    f.append(b"durable").unwrap();
    f.sync().unwrap();
    f.append(b"-volatile").unwrap();
    assert_eq!(fs.file_bytes(p("/d/f")).unwrap(), b"durable-volatile");
    fs.sync_dir(p("/d")).unwrap();
    fs.power_cut();
    assert_eq!(fs.file_bytes(p("/d/f")).unwrap(), b"durable");
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), b"durable");
}

#[test]
fn a_created_file_vanishes_without_sync_dir() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/f")).unwrap();
    f.append(b"x").unwrap();
    f.sync().unwrap();
    fs.power_cut();
    assert!(!fs.exists(p("/d/f")));
    assert!(fs.list_dir(p("/d")).unwrap().is_empty());
}

#[test]
fn sync_dir_makes_entries_durable() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/f")).unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    fs.power_cut();
    assert!(fs.exists(p("/d/f")));
    assert_eq!(fs.list_dir(p("/d")).unwrap(), vec!["f".to_string()]);
}

#[test]
fn rename_and_remove_revert_without_sync_dir() {
    let fs = fs_with_dir();
    for name in ["/d/a", "/d/b"] {
        let mut f = fs.create(p(name)).unwrap();
        f.append(name.as_bytes()).unwrap();
        f.sync().unwrap();
    }
    fs.sync_dir(p("/d")).unwrap();
    fs.rename(p("/d/a"), p("/d/c")).unwrap();
    fs.remove_file(p("/d/b")).unwrap();
    assert_eq!(fs.list_dir(p("/d")).unwrap(), vec!["c".to_string()]);
    fs.power_cut();
    assert_eq!(fs.list_dir(p("/d")).unwrap(), vec!["a", "b"]);
    assert_eq!(fs.read_all(p("/d/b")).unwrap(), b"/d/b");
}

#[test]
fn rename_over_an_existing_file_is_atomic_once_synced() {
    let fs = fs_with_dir();
    fs.write_atomic(p("/d/m"), b"one").unwrap();
    fs.write_atomic(p("/d/m"), b"two").unwrap();
    fs.power_cut();
    assert_eq!(fs.read_all(p("/d/m")).unwrap(), b"two");
    assert_eq!(fs.list_dir(p("/d")).unwrap(), vec!["m".to_string()]);
}

#[test]
fn a_new_directory_needs_its_parent_synced() {
    let fs = FaultFs::new();
    fs.create_dir_all(p("/a/b")).unwrap();
    fs.sync_dir(p("/a")).unwrap(); // b is durable in a, but a is not durable in /
    fs.power_cut();
    assert!(!fs.exists(p("/a")));
    fs.create_dir_all(p("/a/b")).unwrap();
    fs.sync_dir(p("/")).unwrap();
    fs.sync_dir(p("/a")).unwrap();
    fs.power_cut();
    assert!(fs.exists(p("/a/b")));
}

#[test]
fn remove_dir_all_reverts_without_sync() {
    let fs = fs_with_dir();
    fs.write_atomic(p("/d/f"), b"keep").unwrap();
    fs.remove_dir_all(p("/d")).unwrap();
    assert!(!fs.exists(p("/d/f")));
    fs.power_cut();
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), b"keep");
    fs.remove_dir_all(p("/d")).unwrap();
    fs.sync_dir(p("/")).unwrap();
    fs.power_cut();
    assert!(!fs.exists(p("/d")));
}

#[test]
fn handles_from_before_a_power_cut_fail() {
    let fs = fs_with_dir();
    fs.write_atomic(p("/d/f"), b"abc").unwrap();
    let mut w = fs.open_append(p("/d/f")).unwrap();
    let r = fs.open(p("/d/f")).unwrap();
    fs.power_cut();
    assert_eq!(os_code(&w.append(b"x").unwrap_err()), Some(5));
    assert_eq!(os_code(&w.sync().unwrap_err()), Some(5));
    assert_eq!(os_code(&r.read_at(0, 1).unwrap_err()), Some(5));
    // New handles work.
    assert_eq!(fs.open(p("/d/f")).unwrap().read_at(0, 3).unwrap(), b"abc");
}

#[test]
fn failed_sync_then_retried_sync_loses_the_bytes() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/log")).unwrap();
    f.append(b"AAAA").unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    fs.inject(Fault::SyncFails {
        path: "log".into(),
        times: 1,
    });
    f.append(b"BBBB").unwrap();
    assert_eq!(os_code(&f.sync().unwrap_err()), Some(5));
    // Readers still see the bytes (they sit in the page cache)...
    assert_eq!(fs.file_bytes(p("/d/log")).unwrap(), b"AAAABBBB");
    f.append(b"CCCC").unwrap();
    // ...and the retry "succeeds", like Linux's fsync after EIO...
    f.sync().unwrap();
    fs.power_cut();
    // ...but the lost bytes reach the disk as zeros.
    assert_eq!(
        fs.file_bytes(p("/d/log")).unwrap(),
        b"AAAA\0\0\0\0CCCC".to_vec()
    );
}

#[test]
fn failed_sync_without_retry_keeps_only_the_old_prefix() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/log")).unwrap();
    f.append(b"AAAA").unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    fs.inject(Fault::SyncFails {
        path: "/d/".into(),
        times: 1,
    });
    f.append(b"BBBB").unwrap();
    assert!(f.sync().is_err());
    fs.power_cut();
    assert_eq!(fs.file_bytes(p("/d/log")).unwrap(), b"AAAA");
}

#[test]
fn append_enospc_after_n_bytes_is_a_short_write() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/sst")).unwrap();
    fs.inject(Fault::AppendNoSpace {
        path: "sst".into(),
        after_bytes: 6,
        times: 2,
    });
    f.append(b"1234").unwrap();
    let e = f.append(b"5678").unwrap_err();
    assert_eq!(os_code(&e), Some(28), "{e}");
    assert_eq!(fs.file_bytes(p("/d/sst")).unwrap(), b"123456");
    assert_eq!(os_code(&f.append(b"9").unwrap_err()), Some(28));
    // Fired twice: now appends work again.
    f.append(b"9").unwrap();
    assert_eq!(fs.file_bytes(p("/d/sst")).unwrap(), b"1234569");
    assert_eq!(fs.counters().faults_fired, 2);
}

#[test]
fn faults_match_only_their_path() {
    let fs = fs_with_dir();
    fs.inject(Fault::SyncFails {
        path: "other".into(),
        times: 1,
    });
    let mut f = fs.create(p("/d/f")).unwrap();
    f.append(b"x").unwrap();
    f.sync().unwrap();
    assert_eq!(fs.counters().faults_fired, 0);
    fs.clear_faults();
}

#[test]
fn rename_eio_changes_nothing() {
    let fs = fs_with_dir();
    fs.write_atomic(p("/d/a"), b"a").unwrap();
    fs.inject(Fault::RenameFails {
        path: "/d/a".into(),
        times: 1,
    });
    assert_eq!(
        os_code(&fs.rename(p("/d/a"), p("/d/b")).unwrap_err()),
        Some(5)
    );
    assert_eq!(fs.list_dir(p("/d")).unwrap(), vec!["a".to_string()]);
    fs.rename(p("/d/a"), p("/d/b")).unwrap();
    assert_eq!(fs.list_dir(p("/d")).unwrap(), vec!["b".to_string()]);
}

#[test]
fn sync_dir_failure_leaves_entries_volatile() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/f")).unwrap();
    f.sync().unwrap();
    fs.inject(Fault::SyncDirFails {
        path: "/d".into(),
        times: 1,
    });
    assert_eq!(os_code(&fs.sync_dir(p("/d")).unwrap_err()), Some(5));
    fs.power_cut();
    assert!(!fs.exists(p("/d/f")));
}

#[test]
fn flip_bit_changes_live_and_durable_bytes() {
    let fs = fs_with_dir();
    fs.write_atomic(p("/d/f"), &[0u8; 4]).unwrap();
    fs.flip_bit(p("/d/f"), 2, 7).unwrap();
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), vec![0, 0, 0x80, 0]);
    fs.power_cut();
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), vec![0, 0, 0x80, 0]);
    assert!(fs.flip_bit(p("/d/f"), 4, 0).is_err());
}

#[test]
fn counters_count_bytes_and_syncs() {
    let fs = fs_with_dir();
    let before = fs.counters();
    let mut f = fs.create(p("/d/f")).unwrap();
    f.append(b"12345").unwrap();
    f.sync().unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    let c = fs.counters();
    assert_eq!(c.bytes_written - before.bytes_written, 5);
    assert_eq!(c.syncs - before.syncs, 2);
    assert_eq!(c.dir_syncs - before.dir_syncs, 1);
}

#[test]
fn truncate_is_durable_at_once() {
    let fs = fs_with_dir();
    fs.write_atomic(p("/d/f"), b"abcdef").unwrap();
    fs.truncate(p("/d/f"), 3).unwrap();
    fs.power_cut();
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), b"abc");
}

#[test]
fn reads_past_the_end_are_errors_and_missing_files_are_not_found() {
    let fs = fs_with_dir();
    fs.write_atomic(p("/d/f"), b"abc").unwrap();
    let r = fs.open(p("/d/f")).unwrap();
    assert!(r.read_at(2, 2).unwrap_err().is_corruption());
    assert!(matches!(fs.open(p("/d/nope")), Err(Error::NotFound(_))));
    assert!(matches!(fs.create(p("/nodir/f")), Err(Error::NotFound(_))));
    assert!(matches!(
        fs.open(p("/d/../f")),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn writes_in_place_are_durable_only_after_sync() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/f")).unwrap();
    f.append(&[0u8; 8]).unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    // Overwrite two zeros and run four bytes past the end.
    let mut w = fs.open_at(p("/d/f"), 6).unwrap();
    assert_eq!(w.len(), 6);
    w.append(b"abcdef").unwrap();
    assert_eq!(w.len(), 12);
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), b"\0\0\0\0\0\0abcdef");
    fs.power_cut();
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), [0u8; 8]);

    let mut w = fs.open_at(p("/d/f"), 2).unwrap();
    w.append(b"xy").unwrap();
    w.sync().unwrap();
    w.append(b"z").unwrap();
    fs.power_cut();
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), b"\0\0xy\0\0\0\0");
}

#[test]
fn a_failed_sync_loses_bytes_written_in_place() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/d/f")).unwrap();
    f.append(b"........").unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    let mut w = fs.open_at(p("/d/f"), 2).unwrap();
    w.append(b"ab").unwrap();
    fs.inject(Fault::SyncFails {
        path: "/d/f".into(),
        times: 1,
    });
    assert_eq!(os_code(&w.sync().unwrap_err()), Some(5));
    // A retried sync "succeeds", but the bytes it covered reach the disk as zeros.
    w.sync().unwrap();
    fs.power_cut();
    assert_eq!(fs.read_all(p("/d/f")).unwrap(), b"..\0\0....");
}
