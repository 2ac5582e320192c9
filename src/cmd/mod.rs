//! Subcommands of the `quarry` binary, one module each.

use clap::Subcommand;

/// `println!` for a command's output. A reader that went away (`quarry lock ls | head -1`)
/// ends the command quietly, as it ends `ls | head`, where `println!` would panic. The
/// binary keeps Rust's ignored SIGPIPE rather than the default that kills the process:
/// the same process talks gRPC, and a write to a reset connection must come back as an
/// error it can report.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::out_line(format_args!($($arg)*))
    };
}

pub mod bench_compaction;
pub mod bench_engine;
pub mod bench_figure6;
pub mod bench_lock;
pub mod bench_lock_etcd;
pub mod bench_lock_fail;
pub mod bench_lock_sessions;
pub mod bench_plot;
pub mod bench_rocksdb_stats;
pub mod bench_ycsb;
pub mod chaos;
pub mod cli;
pub mod cli_admin;
pub mod cli_data;
pub mod cli_format;
pub mod crash_writer;
pub mod dev;
pub mod lock;
pub mod master;
pub mod tablet_server;

/// Writes one line of a command's output (see [`outln`]).
pub fn out_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        stdout_failed(e);
    }
}

/// Ends the process after a failed write to stdout: quietly when the reader went away,
/// with the error otherwise.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("quarry: writing the output: {e}");
    std::process::exit(1);
}

/// Every subcommand.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Benchmarks and workload drivers.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Runs one lock-service replica.
    LockServer(lock::LockServerArgs),
    /// Looks at and changes the lock service (ls, cat, put, rm, lock, unlock, ...).
    Lock(lock::LockArgs),
    /// The process the kill -9 crash test kills (see tests/chaos_engine_kill9.rs).
    #[command(hide = true)]
    CrashWriter(crash_writer::CrashWriterArgs),
    /// Runs a tablet server.
    TabletServer(tablet_server::TabletServerArgs),
    /// Runs a master (a standby until it holds the master lock).
    Master(master::MasterArgs),
    /// Runs a whole local cluster (3 lock replicas, 2 masters, 3 tablet servers).
    Dev(dev::DevArgs),
    /// The lease-loss and fault-injection suite: runs a scenario against a real cluster,
    /// or `check`s a saved run (see docs/reliability.md).
    Chaos(chaos::ChaosArgs),
    /// The cbt-style data and admin commands.
    #[command(flatten)]
    Data(cli::DataCommand),
}

/// `quarry bench ...`
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// db_bench workloads (fillseq, fillrandom, overwrite, readrandom, readseq, seekrandom)
    /// against one embedded tablet.
    Engine(bench_engine::EngineArgs),
    /// A compaction policy's write, read and space amplification, compaction throughput
    /// and write stalls over one run on one tablet (or `--simulate`d), beside db_bench's.
    Compaction(bench_compaction::CompactionArgs),
    /// The YCSB core workloads (a-f) against a cluster or an embedded tablet.
    Ycsb(bench_ycsb::YcsbArgs),
    /// The Bigtable paper's figure 6 benchmarks against a running cluster.
    Figure6(bench_figure6::Figure6Args),
    /// Lock service (Quarry's or etcd's): acquire+release latency and throughput, holder
    /// death, leader kill and freeze, sessions' CPU.
    Lock(bench_lock::LockBenchArgs),
}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bench(b) => match b {
            BenchCommand::Engine(a) => bench_engine::run(a),
            BenchCommand::Compaction(a) => bench_compaction::run(a),
            BenchCommand::Ycsb(a) => bench_ycsb::run(a),
            BenchCommand::Figure6(a) => bench_figure6::run(a),
            BenchCommand::Lock(a) => bench_lock::run(a),
        },
        Command::LockServer(a) => lock::lock_server(a),
        Command::Lock(a) => lock::lock(a),
        Command::Master(a) => master::master(a),
        Command::TabletServer(a) => tablet_server::tablet_server(a),
        Command::CrashWriter(a) => crash_writer::run(a),
        Command::Dev(a) => dev::dev(a),
        Command::Chaos(a) => chaos::run(a),
        Command::Data(c) => cli::run(c),
    }
}
