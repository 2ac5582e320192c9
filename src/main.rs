//! The `quarry` binary: every role and tool of Quarry as a subcommand.
//!
//! Each subcommand lives in its own module under `src/cmd/`; this file only parses the
//! command line and dispatches.

mod cmd;
mod ops;

use clap::{CommandFactory, Parser};

/// Quarry: a Bigtable-style distributed store.
#[derive(Parser, Debug)]
#[command(name = "quarry", version, about, args_override_self = true)]
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
    // `--config FILE` of a server command becomes flags before the command line's own.
    let args = ops::config::expand(std::env::args_os().collect(), long_flags)?;
    let cli = Cli::parse_from(args);
    cmd::run(cli.command)
}

/// The long flag names of subcommand `sub`.
fn long_flags(sub: &str) -> Vec<String> {
    Cli::command()
        .find_subcommand(sub)
        .map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
