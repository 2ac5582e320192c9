//! `--config FILE`: one TOML file for a deployment, with the same keys as the flags.
//!
//! ```toml
//! # Shared by every command that has the flag (others skip the key):
//! data = "/mnt/quarry/root"
//! lock = ["10.0.0.1:7101", "10.0.0.2:7101", "10.0.0.3:7101"]
//!
//! [tablet-server]          # read by `quarry tablet-server --config FILE` only
//! memtable_bytes = 67108864
//! no_sync = false
//! ```
//!
//! A key is a flag's long name, with `_` or `-` (`memtable_bytes` is `--memtable-bytes`).
//! Top-level keys apply to each of `tablet-server`, `master`, `lock-server` and `dev` that
//! has the flag; a section named after a command holds keys for that command only and
//! wins over the top level. Values: a string or number is the flag's value; `true` gives a
//! switch, `false` leaves it off; an array is joined with commas (`lock`, `peers`).
//!
//! [`expand`] turns the file into flags placed *before* the command line's own, and the
//! parser lets a later flag replace an earlier one (`args_override_self`), so **flags win
//! over the file**, the file wins over environment variables (`QUARRY_LOCK`), and both
//! over the defaults. A top-level key no command has, a key in a section its command does
//! not have, any other table, or a nested array is an error naming the file and the key.
//! See docs/quarry.example.toml.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context};

/// The subcommands that take `--config`.
pub const COMMANDS: &[&str] = &["tablet-server", "master", "lock-server", "dev"];

/// Largest config file read (a deployment file is a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The command line `args` (program name first) with the flags of its `--config FILE`
/// inserted right after the subcommand; unchanged when there is none. `known(cmd)` lists
/// the long flag names of command `cmd`.
pub fn expand(
    args: Vec<OsString>,
    known: impl Fn(&str) -> Vec<String>,
) -> anyhow::Result<Vec<OsString>> {
    let Some(sub) = args.get(1).and_then(|s| s.to_str()) else {
        return Ok(args);
    };
    if !COMMANDS.contains(&sub) {
        return Ok(args);
    }
    let Some(file) = config_path(&args[2..])? else {
        return Ok(args);
    };
    let flags = file_flags(Path::new(&file), sub, &known)?;
    let mut out = args[..2].to_vec();
    out.extend(flags.into_iter().map(OsString::from));
    out.extend(args[2..].iter().cloned());
    Ok(out)
}

/// The value of `--config` among `args`, if given.
fn config_path(args: &[OsString]) -> anyhow::Result<Option<String>> {
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(Some).context("--config needs a file");
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Ok(Some(v.to_string()));
        }
    }
    Ok(None)
}

/// The flags the TOML file at `path` stands for, for command `sub`.
pub fn file_flags(
    path: &Path,
    sub: &str,
    known: impl Fn(&str) -> Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .with_context(|| format!("config file {shown}"))?
        .len();
    if len > MAX_CONFIG_BYTES {
        bail!("config file {shown} is {len} bytes, more than the {MAX_CONFIG_BYTES} allowed");
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {shown}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {shown} is not valid TOML"))?;
    let own = known(sub);
    let all: Vec<String> = COMMANDS.iter().flat_map(|c| known(c)).collect();
    let mut chosen: std::collections::BTreeMap<String, &toml::Value> = Default::default();
    for (k, v) in &table {
        if COMMANDS.contains(&k.as_str()) {
            continue;
        }
        let name = flag_name(k, &all).with_context(|| format!("config file {shown}"))?;
        if own.contains(&name) {
            chosen.insert(name, v);
        }
    }
    if let Some(section) = table.get(sub) {
        let toml::Value::Table(section) = section else {
            bail!("config file {shown}: [{sub}] must be a table");
        };
        for (k, v) in section {
            let name =
                flag_name(k, &own).with_context(|| format!("config file {shown}, [{sub}]"))?;
            chosen.insert(name, v);
        }
    }
    let mut flags = Vec::new();
    for (name, v) in chosen {
        match value_of(v).with_context(|| format!("config file {shown}: key {name:?}"))? {
            Some(val) => flags.extend([format!("--{name}"), val]),
            None if *v == toml::Value::Boolean(true) => flags.push(format!("--{name}")),
            None => {}
        }
    }
    Ok(flags)
}

/// The flag key `k` names (`_` read as `-`), if it is among `known` (and not `config`).
fn flag_name(k: &str, known: &[String]) -> anyhow::Result<String> {
    let name = k.replace('_', "-");
    if name == "config" || !known.contains(&name) {
        let mut keys: Vec<&String> = known.iter().collect();
        keys.sort();
        keys.dedup();
        let keys: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
        bail!(
            "unknown key {k:?} (the keys are the flags: {})",
            keys.join(", ")
        );
    }
    Ok(name)
}

/// A flag value (`None` for a boolean: a switch).
fn value_of(v: &toml::Value) -> anyhow::Result<Option<String>> {
    use toml::Value as V;
    Ok(Some(match v {
        V::String(s) => s.clone(),
        V::Integer(i) => i.to_string(),
        V::Float(f) => f.to_string(),
        V::Boolean(_) => return Ok(None),
        V::Array(a) => {
            let parts: anyhow::Result<Vec<String>> = a
                .iter()
                .map(|x| match value_of(x)? {
                    Some(s) if !matches!(x, V::Array(_)) => Ok(s),
                    _ => bail!("an array holds only strings and numbers"),
                })
                .collect();
            parts?.join(",")
        }
        V::Datetime(_) | V::Table(_) => bail!("must be a string, number, boolean or array"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(cmd: &str) -> Vec<String> {
        let flags: &[&str] = match cmd {
            "tablet-server" => &["listen", "lock", "memtable-bytes", "no-sync", "name"],
            "lock-server" => &["listen", "peers", "id"],
            _ => &["listen", "lock"],
        };
        flags.iter().map(|s| s.to_string()).collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn flags(text: &str, sub: &str) -> anyhow::Result<Vec<String>> {
        let f = write(text);
        file_flags(f.path(), sub, known)
    }

    #[test]
    fn keys_become_flags_before_the_command_line() {
        let f = write(
            "listen = \"127.0.0.1:9\"\nlock = [\"a:1\", \"b:2\"]\n\
             [tablet-server]\nmemtable_bytes = 5\nno-sync = true\n",
        );
        let args: Vec<OsString> = ["quarry", "tablet-server", "--config"]
            .iter()
            .map(OsString::from)
            .chain([
                f.path().as_os_str().to_owned(),
                "--listen".into(),
                "x:1".into(),
            ])
            .collect();
        let out = expand(args, known).unwrap();
        let out: Vec<String> = out.iter().map(|s| s.to_string_lossy().into()).collect();
        assert_eq!(
            out[2..10],
            [
                "--listen",
                "127.0.0.1:9",
                "--lock",
                "a:1,b:2",
                "--memtable-bytes",
                "5",
                "--no-sync",
                "--config"
            ]
        );
        assert_eq!(
            out.last().unwrap(),
            "x:1",
            "the command line's flag comes last"
        );
    }

    #[test]
    fn sections_are_per_command_and_win_over_the_top_level() {
        let text = "listen = \"t:1\"\npeers = \"1=a:1\"\n[lock-server]\nlisten = \"l:1\"\n\
                    [master]\nlisten = \"m:1\"\n";
        assert_eq!(flags(text, "tablet-server").unwrap(), ["--listen", "t:1"]);
        let l = flags(text, "lock-server").unwrap();
        assert_eq!(l, ["--listen", "l:1", "--peers", "1=a:1"]);
        assert_eq!(flags(text, "master").unwrap(), ["--listen", "m:1"]);
    }

    #[test]
    fn unknown_keys_and_tables_are_named() {
        let e = format!("{:#}", flags("listne = \"x\"\n", "master").unwrap_err());
        assert!(e.contains("unknown key \"listne\""), "{e}");
        let e = format!(
            "{:#}",
            flags("[server]\nlisten = \"x\"\n", "master").unwrap_err()
        );
        assert!(e.contains("unknown key \"server\""), "{e}");
        let e = format!(
            "{:#}",
            flags("[master]\npeers = \"x\"\n", "master").unwrap_err()
        );
        assert!(e.contains("[master]") && e.contains("\"peers\""), "{e}");
        let e = format!("{:#}", flags("lock = [[\"a\"]]\n", "master").unwrap_err());
        assert!(e.contains("key \"lock\"") && e.contains("array"), "{e}");
        let e = format!("{:#}", flags("config = \"x\"\n", "master").unwrap_err());
        assert!(e.contains("unknown key \"config\""), "{e}");
    }

    #[test]
    fn false_switches_and_missing_files() {
        assert!(flags("no_sync = false\n", "tablet-server")
            .unwrap()
            .is_empty());
        let missing = Path::new("/nonexistent/q.toml");
        let e = format!("{:#}", file_flags(missing, "master", known).unwrap_err());
        assert!(e.contains("/nonexistent/q.toml"), "{e}");
    }

    #[test]
    fn example_file_parses_for_every_command() {
        use clap::Parser;
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/quarry.example.toml");
        for sub in COMMANDS {
            let mut args = vec!["quarry", sub, "--config", file];
            if *sub == "lock-server" {
                args.extend(["--id", "2"]);
            }
            let args = args.into_iter().map(OsString::from).collect();
            let expanded = expand(args, crate::long_flags).unwrap();
            let parsed = crate::Cli::try_parse_from(&expanded);
            assert!(parsed.is_ok(), "{sub}: {expanded:?}: {:?}", parsed.err());
        }
        let args = ["quarry", "master", "--config", file, "--tick-ms", "7"];
        let expanded = expand(args.iter().map(OsString::from).collect(), crate::long_flags);
        let parsed = format!(
            "{:?}",
            crate::Cli::try_parse_from(expanded.unwrap()).unwrap()
        );
        assert!(parsed.contains("tick_ms: 7,"), "the flag wins: {parsed}");
        assert!(parsed.contains("max_moves: 1,") && parsed.contains("/mnt/quarry/root"));
    }

    #[test]
    fn other_commands_are_left_alone() {
        let args: Vec<OsString> = ["quarry", "ls", "--config", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(expand(args.clone(), known).unwrap(), args);
    }
}
