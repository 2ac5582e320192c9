//! Subcommands of the `quarry` binary, one module each.

use clap::Subcommand;

pub mod cli;
pub mod cli_admin;
pub mod cli_data;
pub mod cli_format;
pub mod dev;
pub mod master;

/// Every subcommand.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Benchmarks and workload drivers.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Runs a master (a standby until it holds the master lock).
    Master(master::MasterArgs),
    /// Runs a whole local cluster (3 lock replicas, 2 masters, 3 tablet servers).
    Dev(dev::DevArgs),
    /// The cbt-style data and admin commands.
    #[command(flatten)]
    Data(cli::DataCommand),
}

/// `quarry bench ...`
#[derive(Subcommand, Debug)]
pub enum BenchCommand {}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bench(b) => match b {},
        Command::Master(a) => master::master(a),
        Command::Dev(a) => dev::dev(a),
        Command::Data(c) => cli::run(c),
    }
}
