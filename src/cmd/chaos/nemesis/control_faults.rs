//! The nemesis actions that go through the processes' control files: clock-rate skew
//! and slow fsyncs (see `sstable::fault::control`).
//!
//! Clock skew stays inside the lock client's safety contract: the client shortens its
//! local lease by a drift margin of 1% (`lockservice::client::LeaseMargins::drift`), which
//! covers a lock-service clock running up to 1% faster than the client's. Every rate here
//! is within 1 ± [`MAX_SKEW`], so the fastest replica over the slowest client is
//! 1.004 / 0.996 ≈ 1.008 < 1.01. A larger skew is outside the contract and may let a
//! client serve after its session ended (docs/reliability.md).

use chaos::nemesis::Action;
use rand::Rng;

use super::{Nemesis, Role, Shared, LEASE};

/// The largest clock-rate deviation from 1 the nemesis sets.
pub const MAX_SKEW: f64 = 0.004;

impl Shared {
    /// Sets `name`'s clock rate and logs it.
    fn set_clock_rate(&self, name: &str, rate: f64) -> anyhow::Result<()> {
        self.cluster
            .lock()
            .set_control(name, |s| s.clock_rate = rate)?;
        self.record(Action::ClockRate, name, format!("clock-rate {rate}"));
        Ok(())
    }

    /// Sets `name`'s fsync delay and logs it.
    fn set_fsync_delay(&self, name: &str, ms: u64) -> anyhow::Result<()> {
        self.cluster
            .lock()
            .set_control(name, |s| s.fsync_delay_ms = ms)?;
        self.record(Action::FsyncDelay, name, format!("fsync-delay-ms {ms}"));
        Ok(())
    }

    /// Returns every process's clock rate and fsync delay to normal (end of a run).
    pub fn reset_controls(&self) -> anyhow::Result<()> {
        let changed: Vec<(String, bool, bool)> = {
            let c = self.cluster.lock();
            c.nodes
                .iter()
                .map(|n| {
                    let s = n.settings();
                    (n.name.clone(), s.clock_rate != 1.0, s.fsync_delay_ms != 0)
                })
                .collect()
        };
        for (name, skewed, slow) in changed {
            if skewed {
                self.set_clock_rate(&name, 1.0)?;
            }
            if slow {
                self.set_fsync_delay(&name, 0)?;
            }
        }
        Ok(())
    }
}

impl Nemesis {
    /// Skews every process's clock, makes the busiest tablet server lose its lease under
    /// the skew (cut from the lock service, or paused without partitions), resets.
    pub(super) async fn clock_skew(&mut self) -> anyhow::Result<()> {
        let worst = self.rng.random_bool(0.5);
        let procs: Vec<(String, Role)> = {
            let c = self.sh.cluster.lock();
            c.nodes.iter().map(|n| (n.name.clone(), n.role)).collect()
        };
        for (name, role) in &procs {
            let rate = if worst {
                // Replicas expire sessions early, clients believe their leases longer.
                match role {
                    Role::Lock => 1.0 + MAX_SKEW,
                    _ => 1.0 - MAX_SKEW,
                }
            } else {
                let r = 1.0 + self.rng.random_range(-MAX_SKEW..=MAX_SKEW);
                (r * 10_000.0).round() / 10_000.0
            };
            self.sh.set_clock_rate(name, rate)?;
        }
        let victim = self.busiest_tablet_server().await?;
        if self.netns {
            let locks = self.names(Role::Lock);
            self.partition(&victim, &locks, true, LEASE * 3).await?;
        } else {
            self.pause(&victim, LEASE * 3).await?;
        }
        self.sh.reset_controls()
    }

    /// Delays the fsyncs of some lock replicas and tablet servers for 2x the lease.
    pub(super) async fn slow_disk(&mut self) -> anyhow::Result<()> {
        let ms = self.rng.random_range(100..=400);
        let targets = match self.rng.random_range(0..3) {
            0 => self.names(Role::Tablet),
            1 => vec![
                self.lock_leader().await?,
                self.busiest_tablet_server().await?,
            ],
            _ => {
                let mut v = self.names(Role::Lock);
                v.extend(self.names(Role::Tablet));
                v
            }
        };
        for t in &targets {
            self.sh.set_fsync_delay(t, ms)?;
        }
        tokio::time::sleep(LEASE * 2).await;
        for t in &targets {
            self.sh.set_fsync_delay(t, 0)?;
        }
        Ok(())
    }
}
