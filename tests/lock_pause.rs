//! Multi-process, RELIABILITY R9(a): SIGSTOP a lock holder's client process past its lease.
//! Its session expires no earlier than a lease after its last KeepAlive, the lock goes to
//! another client only after the lock-delay, the paused holder's sequencer is rejected,
//! and the holder, resumed, learns that its session is lost and stops.

mod lock_support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lock_support::*;
use lockservice::pb::watch_event::Kind;
use lockservice::state::{LockMode, Sequencer};
use lockservice::Error;
use parking_lot::Mutex;
use tokio_stream::StreamExt;

fn parse_holder_line(out: &str) -> Option<Sequencer> {
    let line = out.lines().find(|l| l.contains(" holds "))?;
    let seq = line.rsplit(' ').next()?;
    let mut it = seq.rsplitn(3, ':');
    let generation = it.next()?.parse().ok()?;
    let _mode = it.next()?;
    Some(Sequencer {
        path: it.next()?.to_string(),
        mode: LockMode::Exclusive,
        generation,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_loses_the_lock_only_after_lease_and_lock_delay() {
    let c = Cluster::start("lock-pause", 3);
    c.leader().await;
    let cl = c.client();
    cl.create("/lock", false, b"").await.unwrap();

    // Record every event on /lock with the time this process saw it.
    let seen: Arc<Mutex<Vec<(Instant, Kind, u64)>>> = Arc::default();
    let mut stream = cl.watch("/lock").await.unwrap();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(e)) = stream.next().await {
            let g = e.sequencer.as_ref().map_or(0, |s| s.generation);
            seen2.lock().push((Instant::now(), e.kind(), g));
        }
    });

    let out_path = c.dir.0.join("holder.out");
    let out = std::fs::File::create(&out_path).unwrap();
    // Its own process group: a stopped process in a process group that becomes orphaned
    // gets SIGHUP from the kernel (POSIX job control), which kills it. That happens when
    // this test runs from a shell job that ends while the holder is stopped (seen: 2 of
    // 145 runs of the bare test binary from a background loop); under nextest, which puts
    // each test in a group of its own, it cannot, but the test must not depend on how it
    // was started. A holder that dies anyway is caught below, before it is resumed.
    let child = Command::new(quarry())
        .args(["lock", "--lock", &c.addr_list().join(","), "lock", "/lock"])
        .env("RUST_LOG", "info")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let holder = Proc(child);
    let text = wait_for_file(&out_path, election_bound(), |s| s.contains(" holds ")).await;
    let old = parse_holder_line(&text).expect("sequencer line");
    cl.check_sequencer(&old).await.unwrap();

    signal(&holder.0, "STOP").unwrap();
    let stopped = Instant::now();
    let b = cl.open_session("successor").await.unwrap();
    let new = b
        .acquire("/lock", LockMode::Exclusive, LEASE * 4 + LOCK_DELAY)
        .await
        .unwrap();
    let moved = stopped.elapsed();
    eprintln!(
        "holder paused -> lock moved after {moved:?} (lease {LEASE:?} + delay {LOCK_DELAY:?})"
    );
    assert!(new.generation > old.generation);

    // Never before the lease (measured from the last KeepAlive, at most a KeepAlive
    // interval before the pause) plus the lock-delay.
    let interval = LEASE / 3;
    assert!(
        moved >= LEASE - interval + LOCK_DELAY,
        "lock moved after only {moved:?}"
    );
    assert!(
        moved <= LEASE + LOCK_DELAY + election_bound(),
        "lock moved late: {moved:?}"
    );

    // The events came in order: release by expiry, lock-delay end (a full delay later),
    // then the new holder.
    let events = wait_for("the new holder's event", election_bound(), || async {
        let ev = seen.lock().clone();
        ev.iter()
            .any(|e| e.1 == Kind::LockAcquired && e.2 == new.generation)
            .then_some(ev)
    })
    .await;
    let at = |k: Kind, g: u64| {
        events
            .iter()
            .position(|e| e.1 == k && e.2 == g)
            .unwrap_or_else(|| panic!("no {k:?} {g}"))
    };
    let released = at(Kind::LockReleased, old.generation);
    let delay_end = at(Kind::LockDelayEnded, old.generation);
    let acquired = at(Kind::LockAcquired, new.generation);
    assert!(released < delay_end && delay_end < acquired, "{events:?}");
    let observed_delay = events[delay_end].0 - events[released].0;
    assert!(
        observed_delay + Duration::from_millis(50) >= LOCK_DELAY,
        "{observed_delay:?}"
    );

    // The paused holder's sequencer is rejected, and so is a write fenced with it.
    assert!(matches!(
        cl.check_sequencer(&old).await,
        Err(Error::StaleSequencer(_))
    ));
    assert!(matches!(
        cl.write("/lock", b"stale", None, Some(&old)).await,
        Err(Error::StaleSequencer(_))
    ));
    cl.write("/lock", b"fresh", None, Some(&new)).await.unwrap();

    // The holder was paused, not dead: a holder that died on its own would make the rest
    // of this test prove nothing about pauses.
    let mut holder = holder;
    if let Some(status) = holder.0.try_wait().unwrap() {
        panic!(
            "the holder exited while paused ({status}); its output:\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default()
        );
    }

    // Resumed, the holder learns its session is gone and exits with an error.
    signal(&holder.0, "CONT").unwrap();
    let within = LEASE * 3 + election_bound();
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = holder.0.try_wait().unwrap() {
            break s;
        }
        // Its log (RUST_LOG=info: session states, KeepAlive errors) tells why.
        assert!(
            Instant::now() < deadline,
            "the resumed holder did not exit within {within:?}; its output:\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        !status.success() && text.contains("lost"),
        "the resumed holder ended with {status} and this output:\n{text}"
    );
}
