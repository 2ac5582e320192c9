//! `--config FILE`: one TOML file with the same keys as a server command's flags.
//!
//! ```toml
//! # quarry tablet-server --config ts.toml
//! listen = "10.0.0.5:7301"
//! data = "/mnt/quarry/root"
//! lock = ["10.0.0.1:7101", "10.0.0.2:7101", "10.0.0.3:7101"]
//! memtable_bytes = 67108864
//! no_sync = false
//! ```
//!
//! A key is a flag's long name, with `_` or `-` (`memtable_bytes` is `--memtable-bytes`).
//! Values: a string or number is the flag's value; `true` gives a switch, `false` leaves it
//! off; an array is joined with commas (`lock`, `peers`). [`expand`] turns the file into
//! flags placed *before* the command line's own, and the parser lets a later flag replace
//! an earlier one (`args_override_self`), so **flags win over the file**, the file wins
//! over environment variables (`QUARRY_LOCK`), and both over the defaults. An unknown key,
//! a table, or a nested array is an error naming the file and the key. The file is read
//! for `tablet-server`, `master`, `lock-server` and `dev`; see docs/quarry.example.toml.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context};

/// The subcommands that take `--config`.
pub const COMMANDS: &[&str] = &["tablet-server", "master", "lock-server", "dev"];

/// Largest config file read (a deployment file is a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The command line `args` (program name first) with the flags of its `--config FILE`
/// inserted right after the subcommand; unchanged when there is none. `known` lists the
/// subcommand's long flag names.
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
    let flags = file_flags(Path::new(&file), &known(sub))?;
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

/// The flags the TOML file at `path` stands for.
pub fn file_flags(path: &Path, known: &[String]) -> anyhow::Result<Vec<String>> {
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
    let mut flags = Vec::new();
    for (k, v) in &table {
        let name = k.replace('_', "-");
        if name == "config" || !known.iter().any(|f| *f == name) {
            bail!(
                "config file {shown}: unknown key {k:?} (the keys are the flags: {})",
                known.join(", ")
            );
        }
        match value_of(v).with_context(|| format!("config file {shown}: key {k:?}"))? {
            Some(val) => flags.extend([format!("--{name}"), val]),
            None if *v == toml::Value::Boolean(true) => flags.push(format!("--{name}")),
            None => {}
        }
    }
    Ok(flags)
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

    fn known() -> Vec<String> {
        ["listen", "lock", "memtable-bytes", "no-sync", "name"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn keys_become_flags_before_the_command_line() {
        let f = write(
            "listen = \"127.0.0.1:9\"\nlock = [\"a:1\", \"b:2\"]\nmemtable_bytes = 5\n\
             no-sync = true\n",
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
        let out = expand(args, |_| known()).unwrap();
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
    fn unknown_keys_and_tables_are_named() {
        let f = write("listne = \"x\"\n");
        let e = file_flags(f.path(), &known()).unwrap_err();
        assert!(format!("{e:#}").contains("unknown key \"listne\""), "{e:#}");
        let f = write("[server]\nlisten = \"x\"\n");
        let e = format!("{:#}", file_flags(f.path(), &known()).unwrap_err());
        assert!(e.contains("unknown key \"server\""), "{e}");
        let f = write("lock = [[\"a\"]]\n");
        let e = format!("{:#}", file_flags(f.path(), &known()).unwrap_err());
        assert!(e.contains("key \"lock\"") && e.contains("array"), "{e}");
    }

    #[test]
    fn false_switches_and_missing_files() {
        let f = write("no_sync = false\n");
        assert!(file_flags(f.path(), &known()).unwrap().is_empty());
        let e = format!(
            "{:#}",
            file_flags(Path::new("/nonexistent/q.toml"), &known()).unwrap_err()
        );
        assert!(e.contains("/nonexistent/q.toml"), "{e}");
    }

    #[test]
    fn other_commands_are_left_alone() {
        let args: Vec<OsString> = ["quarry", "ls", "--config", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(expand(args.clone(), |_| known()).unwrap(), args);
    }
}
