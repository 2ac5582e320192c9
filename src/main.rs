//! The `quarry` binary: every role and tool of Quarry as a subcommand.
//!
//! Each subcommand lives in its own module under `src/cmd/`; this file only parses the
//! command line and dispatches.

mod cmd;

use clap::Parser;

/// Quarry: a Bigtable-style distributed store.
#[derive(Parser, Debug)]
#[command(name = "quarry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    cmd::run(cli.command)
}
