//! Subcommands of the `quarry` binary, one module each.

use clap::Subcommand;

/// Every subcommand.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Benchmarks and workload drivers.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `quarry bench ...`
#[derive(Subcommand, Debug)]
pub enum BenchCommand {}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bench(b) => match b {},
    }
}
