//! The `quarry` binary: every role and tool of Quarry as a subcommand.

fn main() -> anyhow::Result<()> {
    Ok(())
}
