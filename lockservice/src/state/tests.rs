//! Table tests of every rule of the state machine. Each test names the rule it shows;
//! `check_invariants` runs after every step.

use super::*;

/// A state under test that checks the invariants after every command.
struct T {
    s: LockState,
}

impl T {
    fn new() -> T {
        T {
            s: LockState::new(),
        }
    }

    fn apply(&mut self, cmd: Command) -> Applied {
        let a = self.s.apply(&cmd);
        self.s.check_invariants();
        a
    }

    fn ok(&mut self, cmd: Command) -> (Reply, Vec<Event>) {
        let a = self.apply(cmd.clone());
        match a.result {
            Ok(r) => (r, a.events),
            Err(e) => panic!("{cmd:?} failed: {e}"),
        }
    }

    fn err(&mut self, cmd: Command) -> Error {
        let before = self.s.clone();
        let a = self.apply(cmd.clone());
        assert!(a.events.is_empty(), "failed {cmd:?} produced events");
        assert_eq!(before, self.s, "failed {cmd:?} changed state");
        a.result.expect_err("command should fail")
    }

    fn session(&mut self) -> SessionId {
        match self.ok(Command::CreateSession { client: "t".into() }).0 {
            Reply::Session(id) => id,
            r => panic!("{r:?}"),
        }
    }

    fn mk(&mut self, path: &str, dir: bool, eph: Option<SessionId>) -> NodeMeta {
        let cmd = Command::Create {
            path: path.into(),
            dir,
            content: if dir { vec![] } else { b"x".to_vec() },
            ephemeral: eph,
        };
        match self.ok(cmd).0 {
            Reply::Node(m) => m,
            r => panic!("{r:?}"),
        }
    }

    fn acquire(&mut self, s: SessionId, path: &str, mode: LockMode) -> Result<Sequencer> {
        let cmd = Command::Acquire {
            session: s,
            path: path.into(),
            mode,
        };
        self.apply(cmd).result.map(|r| match r {
            Reply::Acquired(seq) => seq,
            r => panic!("{r:?}"),
        })
    }
}

fn write(path: &str, content: &[u8], cas: Option<u64>) -> Command {
    Command::Write {
        path: path.into(),
        content: content.to_vec(),
        expected_content_generation: cas,
        fence: None,
    }
}

#[test]
fn paths_are_validated() {
    for bad in ["", "a", "/a/", "//a", "/a//b", "/a/./b", "/a/..", "/a\0b"] {
        assert!(
            matches!(validate_path(bad), Err(Error::InvalidArgument(_))),
            "{bad:?} accepted"
        );
    }
    assert!(validate_path(&format!("/{}", "a".repeat(MAX_PATH))).is_err());
    assert!(validate_path(&format!("/{}", "a".repeat(256))).is_err());
    for good in ["/", "/a", "/a/b-c_d.e"] {
        validate_path(good).unwrap();
    }
    assert_eq!(parent_of("/a"), ("/", "a"));
    assert_eq!(parent_of("/a/b/c"), ("/a/b", "c"));
}

#[test]
fn create_needs_an_existing_parent_directory_and_a_free_name() {
    let mut t = T::new();
    let c = |p: &str, dir| Command::Create {
        path: p.into(),
        dir,
        content: vec![],
        ephemeral: None,
    };
    assert!(matches!(t.err(c("/a/b", false)), Error::NotFound(_)));
    t.mk("/a", true, None);
    t.mk("/a/f", false, None);
    assert!(matches!(t.err(c("/a/f", false)), Error::AlreadyExists(_)));
    assert!(matches!(
        t.err(c("/a/f/g", false)),
        Error::FailedPrecondition(_)
    ));
    assert!(matches!(t.err(c("/", true)), Error::AlreadyExists(_)));
    let names: Vec<_> =
        t.s.list("/a")
            .unwrap()
            .into_iter()
            .map(|m| m.path)
            .collect();
    assert_eq!(names, vec!["/a/f"]);
    assert!(matches!(
        t.s.list("/a/f"),
        Err(Error::FailedPrecondition(_))
    ));
}

#[test]
fn content_over_256_kib_is_rejected_and_at_the_limit_accepted() {
    let mut t = T::new();
    let mk = |n: usize| Command::Create {
        path: "/f".into(),
        dir: false,
        content: vec![7; n],
        ephemeral: None,
    };
    assert!(matches!(
        t.err(mk(MAX_CONTENT + 1)),
        Error::InvalidArgument(_)
    ));
    t.ok(mk(MAX_CONTENT));
    assert!(matches!(
        t.err(write("/f", &vec![0; MAX_CONTENT + 1], None)),
        Error::InvalidArgument(_)
    ));
    let dir_with_content = Command::Create {
        path: "/d".into(),
        dir: true,
        content: vec![1],
        ephemeral: None,
    };
    assert!(matches!(t.err(dir_with_content), Error::InvalidArgument(_)));
}

#[test]
fn generations_instance_content_and_compare_and_set() {
    let mut t = T::new();
    let m1 = t.mk("/f", false, None);
    assert_eq!(m1.content_generation, 1);
    let (r, ev) = t.ok(write("/f", b"two", Some(1)));
    let Reply::Node(m2) = r else { panic!() };
    assert_eq!((m2.content_generation, m2.instance), (2, m1.instance));
    assert_eq!(
        ev,
        vec![Event::ContentChanged {
            path: "/f".into(),
            content_generation: 2
        }]
    );
    // A stale compare-and-set fails and changes nothing.
    assert!(matches!(
        t.err(write("/f", b"x", Some(1))),
        Error::FailedPrecondition(_)
    ));
    assert_eq!(t.s.read("/f").unwrap().0, b"two");
    // Delete and re-create: a new instance, never an old one.
    t.ok(Command::Delete {
        path: "/f".into(),
        fence: None,
    });
    let m3 = t.mk("/f", false, None);
    assert!(m3.instance > m1.instance);
    assert_eq!(m3.content_generation, 1);
}

#[test]
fn delete_refuses_non_empty_directories_and_the_root() {
    let mut t = T::new();
    t.mk("/d", true, None);
    t.mk("/d/f", false, None);
    let del = |p: &str| Command::Delete {
        path: p.into(),
        fence: None,
    };
    assert!(matches!(t.err(del("/d")), Error::FailedPrecondition(_)));
    assert!(matches!(t.err(del("/")), Error::InvalidArgument(_)));
    assert!(matches!(t.err(del("/nope")), Error::NotFound(_)));
    let (_, ev) = t.ok(del("/d/f"));
    assert_eq!(
        ev,
        vec![
            Event::Deleted {
                path: "/d/f".into()
            },
            Event::ChildRemoved {
                parent: "/d".into(),
                name: "f".into()
            }
        ]
    );
    t.ok(del("/d"));
    assert!(t.s.list("/").unwrap().is_empty());
}

#[test]
fn sessions_get_fresh_ids_and_dead_sessions_can_do_nothing() {
    let mut t = T::new();
    let a = t.session();
    let b = t.session();
    assert!(b > a);
    t.mk("/f", false, None);
    t.ok(Command::CloseSession { session: a });
    assert_eq!(
        t.err(Command::CloseSession { session: a }),
        Error::SessionExpired(a)
    );
    assert_eq!(
        t.err(Command::ExpireSession { session: a }),
        Error::SessionExpired(a)
    );
    assert_eq!(
        t.acquire(a, "/f", LockMode::Exclusive),
        Err(Error::SessionExpired(a))
    );
    let eph = Command::Create {
        path: "/e".into(),
        dir: false,
        content: vec![],
        ephemeral: Some(a),
    };
    assert_eq!(t.err(eph), Error::SessionExpired(a));
    // A new session never reuses an old id.
    assert!(t.session() > b);
}

#[test]
fn exclusive_and_shared_lock_compatibility() {
    let mut t = T::new();
    t.mk("/l", false, None);
    let (a, b, c) = (t.session(), t.session(), t.session());
    let sa = t.acquire(a, "/l", LockMode::Shared).unwrap();
    let sb = t.acquire(b, "/l", LockMode::Shared).unwrap();
    assert!(sb.generation > sa.generation);
    assert!(matches!(
        t.acquire(c, "/l", LockMode::Exclusive),
        Err(Error::LockBusy(_))
    ));
    // Re-acquiring in the same mode returns the same sequencer (retries are harmless).
    assert_eq!(t.acquire(a, "/l", LockMode::Shared).unwrap(), sa);
    assert!(matches!(
        t.acquire(a, "/l", LockMode::Exclusive),
        Err(Error::FailedPrecondition(_))
    ));
    t.ok(Command::Release {
        session: a,
        path: "/l".into(),
    });
    t.ok(Command::Release {
        session: b,
        path: "/l".into(),
    });
    let sc = t.acquire(c, "/l", LockMode::Exclusive).unwrap();
    assert!(matches!(
        t.acquire(a, "/l", LockMode::Shared),
        Err(Error::LockBusy(_))
    ));
    assert!(matches!(
        t.acquire(a, "/l", LockMode::Exclusive),
        Err(Error::LockBusy(_))
    ));
    assert_eq!(t.s.stat("/l").unwrap().lock_generation, sc.generation);
    assert!(matches!(
        t.acquire(a, "/nope", LockMode::Shared),
        Err(Error::NotFound(_))
    ));
    // Releasing what you do not hold is an error.
    assert!(matches!(
        t.err(Command::Release {
            session: a,
            path: "/l".into()
        }),
        Error::FailedPrecondition(_)
    ));
}

#[test]
fn generations_strictly_increase_across_locks_and_recreation() {
    let mut t = T::new();
    t.mk("/x", false, None);
    t.mk("/y", false, None);
    let s = t.session();
    let mut last = 0;
    for i in 0..20 {
        let p = if i % 2 == 0 { "/x" } else { "/y" };
        let seq = t.acquire(s, p, LockMode::Exclusive).unwrap();
        assert!(
            seq.generation > last,
            "generation went {last} -> {}",
            seq.generation
        );
        last = seq.generation;
        t.ok(Command::Release {
            session: s,
            path: p.into(),
        });
        if i == 10 {
            t.ok(Command::Delete {
                path: "/x".into(),
                fence: None,
            });
            t.mk("/x", false, None);
        }
    }
}

#[test]
fn sequencers_are_valid_only_while_their_holding_lasts() {
    let mut t = T::new();
    t.mk("/l", false, None);
    let a = t.session();
    let b = t.session();
    let sa = t.acquire(a, "/l", LockMode::Exclusive).unwrap();
    assert_eq!(t.s.sequencer(a, "/l").unwrap(), sa);
    assert!(matches!(
        t.s.sequencer(b, "/l"),
        Err(Error::FailedPrecondition(_))
    ));
    t.s.check_sequencer(&sa).unwrap();
    let wrong_mode = Sequencer {
        mode: LockMode::Shared,
        ..sa.clone()
    };
    assert!(matches!(
        t.s.check_sequencer(&wrong_mode),
        Err(Error::StaleSequencer(_))
    ));
    t.ok(Command::Release {
        session: a,
        path: "/l".into(),
    });
    assert!(matches!(
        t.s.check_sequencer(&sa),
        Err(Error::StaleSequencer(_))
    ));
    let sb = t.acquire(b, "/l", LockMode::Exclusive).unwrap();
    assert!(matches!(
        t.s.check_sequencer(&sa),
        Err(Error::StaleSequencer(_))
    ));
    t.s.check_sequencer(&sb).unwrap();
    // A fenced write with the stale sequencer is refused; with the current one it lands.
    let fenced = |seq: &Sequencer| Command::Write {
        path: "/l".into(),
        content: b"v".to_vec(),
        expected_content_generation: None,
        fence: Some(seq.clone()),
    };
    assert!(matches!(t.err(fenced(&sa)), Error::StaleSequencer(_)));
    t.ok(fenced(&sb));
    // Deleting the node invalidates every sequencer on it.
    t.ok(Command::Delete {
        path: "/l".into(),
        fence: Some(sb.clone()),
    });
    assert!(matches!(
        t.s.check_sequencer(&sb),
        Err(Error::StaleSequencer(_))
    ));
    assert!(t.s.session(b).unwrap().locks.is_empty());
}

#[test]
fn close_frees_locks_at_once_and_deletes_ephemerals() {
    let mut t = T::new();
    t.mk("/l", false, None);
    let a = t.session();
    let b = t.session();
    let sa = t.acquire(a, "/l", LockMode::Exclusive).unwrap();
    t.mk("/e", false, Some(a));
    let (_, ev) = t.ok(Command::CloseSession { session: a });
    assert!(ev.contains(&Event::LockReleased {
        sequencer: sa.clone(),
        session: a,
        by_expiry: false
    }));
    assert!(ev.contains(&Event::Deleted { path: "/e".into() }));
    assert_eq!(
        ev.last(),
        Some(&Event::SessionEnded {
            session: a,
            expired: false
        })
    );
    assert!(t.s.delayed_locks().is_empty());
    assert!(matches!(t.s.stat("/e"), Err(Error::NotFound(_))));
    t.acquire(b, "/l", LockMode::Exclusive).unwrap();
}

#[test]
fn expiry_releases_into_lock_delay_until_end_lock_delay_with_that_generation() {
    let mut t = T::new();
    t.mk("/l", false, None);
    let a = t.session();
    let b = t.session();
    let sa = t.acquire(a, "/l", LockMode::Exclusive).unwrap();
    let (_, ev) = t.ok(Command::ExpireSession { session: a });
    assert!(ev.contains(&Event::LockReleased {
        sequencer: sa.clone(),
        session: a,
        by_expiry: true
    }));
    assert_eq!(t.s.delayed_locks(), vec![("/l".to_string(), sa.generation)]);
    assert!(matches!(
        t.s.check_sequencer(&sa),
        Err(Error::StaleSequencer(_))
    ));
    // Nobody gets the lock during lock-delay, in either mode.
    assert!(matches!(
        t.acquire(b, "/l", LockMode::Exclusive),
        Err(Error::LockBusy(_))
    ));
    assert!(matches!(
        t.acquire(b, "/l", LockMode::Shared),
        Err(Error::LockBusy(_))
    ));
    // An EndLockDelay naming another generation is a no-op.
    let (_, ev) = t.ok(Command::EndLockDelay {
        path: "/l".into(),
        generation: sa.generation + 7,
    });
    assert!(ev.is_empty());
    assert!(t.acquire(b, "/l", LockMode::Exclusive).is_err());
    let (_, ev) = t.ok(Command::EndLockDelay {
        path: "/l".into(),
        generation: sa.generation,
    });
    assert_eq!(
        ev,
        vec![Event::LockDelayEnded {
            path: "/l".into(),
            generation: sa.generation
        }]
    );
    let sb = t.acquire(b, "/l", LockMode::Exclusive).unwrap();
    assert!(sb.generation > sa.generation);
}

#[test]
fn a_later_expiry_restarts_the_lock_delay() {
    let mut t = T::new();
    t.mk("/l", false, None);
    let (a, b, c) = (t.session(), t.session(), t.session());
    let sa = t.acquire(a, "/l", LockMode::Shared).unwrap();
    let sb = t.acquire(b, "/l", LockMode::Shared).unwrap();
    t.ok(Command::ExpireSession { session: a });
    // b still holds it shared; b expires later: the delay now belongs to b's holding.
    t.ok(Command::ExpireSession { session: b });
    t.ok(Command::EndLockDelay {
        path: "/l".into(),
        generation: sa.generation,
    });
    assert!(matches!(
        t.acquire(c, "/l", LockMode::Exclusive),
        Err(Error::LockBusy(_))
    ));
    t.ok(Command::EndLockDelay {
        path: "/l".into(),
        generation: sb.generation,
    });
    t.acquire(c, "/l", LockMode::Exclusive).unwrap();
}

#[test]
fn expiry_deletes_ephemeral_trees_deepest_first() {
    let mut t = T::new();
    let a = t.session();
    let b = t.session();
    t.mk("/srv", true, None);
    t.mk("/srv/a", true, Some(a));
    t.mk("/srv/a/x", false, Some(a));
    t.mk("/srv/a/y", true, Some(a));
    t.mk("/srv/a/y/z", false, Some(a));
    // Under an ephemeral directory only the same session's ephemeral nodes may live.
    let foreign = Command::Create {
        path: "/srv/a/q".into(),
        dir: false,
        content: vec![],
        ephemeral: Some(b),
    };
    assert!(matches!(t.err(foreign), Error::FailedPrecondition(_)));
    let permanent = Command::Create {
        path: "/srv/a/q".into(),
        dir: false,
        content: vec![],
        ephemeral: None,
    };
    assert!(matches!(t.err(permanent), Error::FailedPrecondition(_)));
    let (_, ev) = t.ok(Command::ExpireSession { session: a });
    let deleted: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Deleted { path } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        deleted,
        vec!["/srv/a/y/z", "/srv/a/y", "/srv/a/x", "/srv/a"]
    );
    assert!(t.s.list("/srv").unwrap().is_empty());
    assert_eq!(
        ev.last(),
        Some(&Event::SessionEnded {
            session: a,
            expired: true
        })
    );
}

#[test]
fn an_ephemeral_file_deleted_by_hand_leaves_its_session_consistent() {
    let mut t = T::new();
    let a = t.session();
    t.mk("/e", false, Some(a));
    t.acquire(a, "/e", LockMode::Exclusive).unwrap();
    t.ok(Command::Delete {
        path: "/e".into(),
        fence: None,
    });
    let info = t.s.session(a).unwrap();
    assert!(info.ephemerals.is_empty() && info.locks.is_empty());
    t.ok(Command::ExpireSession { session: a });
}

#[test]
fn events_of_create_name_parent_child_and_content() {
    let mut t = T::new();
    t.mk("/d", true, None);
    let (_, ev) = t.ok(Command::Create {
        path: "/d/f".into(),
        dir: false,
        content: b"hi".to_vec(),
        ephemeral: None,
    });
    assert_eq!(
        ev,
        vec![
            Event::ChildAdded {
                parent: "/d".into(),
                name: "f".into()
            },
            Event::ContentChanged {
                path: "/d/f".into(),
                content_generation: 1
            },
        ]
    );
}

/// Replays a pseudo-random command mix on two copies (one via a serde round trip, as a
/// snapshot would) and checks they agree on every result, event and final state.
#[test]
fn apply_is_deterministic_and_survives_a_serde_round_trip() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut a = LockState::new();
    let mut cmds = Vec::new();
    for _ in 0..3000 {
        let s = next(6) + 1;
        let p = ["/a", "/b", "/a/c", "/d"][next(4) as usize].to_string();
        let cmd = match next(9) {
            0 => Command::CreateSession { client: "c".into() },
            1 => Command::ExpireSession { session: s },
            2 => Command::CloseSession { session: s },
            3 => Command::Create {
                path: p,
                dir: next(2) == 0,
                content: vec![],
                ephemeral: (next(2) == 0).then_some(s),
            },
            4 => Command::Delete {
                path: p,
                fence: None,
            },
            5 => write(&p, b"w", None),
            6 => Command::Release {
                session: s,
                path: p,
            },
            7 => Command::EndLockDelay {
                path: p,
                generation: next(40),
            },
            _ => Command::Acquire {
                session: s,
                path: p,
                mode: if next(2) == 0 {
                    LockMode::Shared
                } else {
                    LockMode::Exclusive
                },
            },
        };
        cmds.push(cmd);
    }
    let mut results = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        results.push(a.apply(c));
        a.check_invariants();
        if i == 1500 {
            break;
        }
    }
    let json = serde_json::to_vec(&a).unwrap();
    let mut b: LockState = serde_json::from_slice(&json).unwrap();
    for c in &cmds[1501..] {
        let ra = a.apply(c);
        let rb = b.apply(c);
        assert_eq!(ra, rb, "{c:?}");
        a.check_invariants();
    }
    assert_eq!(a, b);
    assert!(results.iter().filter(|r| r.result.is_ok()).count() > 100);
}

#[test]
fn a_batch_applies_its_commands_in_order_as_if_each_were_an_entry() {
    // The same commands, once one by one and once as a batch, give the same results,
    // the same events in the same order and the same state; a failing command in the
    // middle fails alone; a batch inside a batch is refused without effect.
    let mut one = T::new();
    let s = one.session();
    let mut batched = one.s.clone();
    let cmds = vec![
        Command::Create {
            path: "/f".into(),
            dir: false,
            content: b"a".to_vec(),
            ephemeral: None,
        },
        Command::Acquire {
            session: s,
            path: "/f".into(),
            mode: LockMode::Exclusive,
        },
        write("/f", b"b", Some(7)), // wrong generation: fails
        Command::Batch(vec![write("/f", b"c", None)]),
        write("/f", b"d", Some(1)),
        Command::Release {
            session: s,
            path: "/f".into(),
        },
    ];
    let mut results = Vec::new();
    let mut events = Vec::new();
    for c in &cmds {
        let a = if matches!(c, Command::Batch(_)) {
            Applied {
                result: Err(Error::InvalidArgument("a batch inside a batch".into())),
                events: vec![],
            }
        } else {
            one.apply(c.clone())
        };
        results.push(a.result);
        events.extend(a.events);
    }
    let a = batched.apply(&Command::Batch(cmds));
    batched.check_invariants();
    assert_eq!(a.result, Ok(Reply::Batch(results.clone())));
    assert_eq!(a.events, events);
    assert_eq!(batched, one.s);
    assert!(matches!(results[2], Err(Error::FailedPrecondition(_))));
    assert!(matches!(results[3], Err(Error::InvalidArgument(_))));
    match &results[4] {
        Ok(Reply::Node(m)) => assert_eq!(m.content_generation, 2),
        r => panic!("{r:?}"),
    }
}
