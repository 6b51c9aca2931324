//! `hub serve --config hub.toml`: a TOML file whose keys are `serve`'s
//! flags (`listen = "0.0.0.0:8080"`, `retention_days = 90`). Precedence:
//! command line, then environment (`HUB_*`), then the file, then defaults.
//! The file is turned into flags before clap parses, so every key is
//! checked exactly like the flag it names (an unknown key is an error).

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context};

/// `args` with the `--config FILE` settings added as flags, where neither
/// the command line nor the environment (`env_prefix` + KEY) sets them.
pub fn expand_args(
    args: Vec<OsString>,
    env_prefix: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<OsString>> {
    let strs: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let file = strs.iter().enumerate().find_map(|(i, a)| {
        if a == "--config" {
            strs.get(i + 1).cloned()
        } else {
            a.strip_prefix("--config=").map(str::to_owned)
        }
    });
    let Some(file) = file else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(Path::new(&file))
        .with_context(|| format!("reading the config file {file}"))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing the config file {file}"))?;
    let mut out = args;
    for (key, value) in table {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            bail!("{file}: key {key:?} is not a flag name (use e.g. retention_days)");
        }
        let flag = format!("--{}", key.replace('_', "-"));
        let on_command_line = strs
            .iter()
            .any(|a| a == &flag || a.starts_with(&format!("{flag}=")));
        let in_env = env(&format!("{env_prefix}{}", key.to_ascii_uppercase())).is_some();
        if on_command_line || in_env {
            continue;
        }
        let scalar = |v: &toml::Value| -> anyhow::Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => bail!("{file}: {key} = {other} is not a string or a number"),
            })
        };
        match &value {
            toml::Value::Boolean(true) => out.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for v in items {
                    out.push(flag.clone().into());
                    out.push(scalar(v)?.into());
                }
            }
            v => {
                out.push(flag.into());
                out.push(scalar(v)?.into());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn file_settings_fill_in_below_flags_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hub.toml");
        std::fs::write(
            &f,
            "listen = \"0.0.0.0:9000\"\nretention_days = 90\nhorizon_days = 7\ndata = \"/srv/hub\"\n",
        )
        .unwrap();
        let cfg = f.to_str().unwrap();
        let got = strings(
            expand_args(
                args(&["hub", "serve", "--config", cfg, "--horizon-days=3"]),
                "HUB_",
                |k| (k == "HUB_DATA").then(|| "/env".to_owned()),
            )
            .unwrap(),
        );
        assert!(
            got.ends_with(&[
                "--listen".into(),
                "0.0.0.0:9000".into(),
                "--retention-days".into(),
                "90".into(),
            ]),
            "{got:?}"
        );
        assert!(
            !got.iter().any(|a| a == "7"),
            "the command line wins: {got:?}"
        );
        assert!(
            !got.iter().any(|a| a == "/srv/hub"),
            "the environment wins: {got:?}"
        );
        // Without --config nothing changes.
        let plain = args(&["hub", "serve"]);
        assert_eq!(expand_args(plain.clone(), "HUB_", |_| None).unwrap(), plain);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hub.toml");
        for (text, says) in [
            ("listen = ", "parsing the config file"),
            ("Listen = \"x\"", "not a flag name"),
            ("listen = { a = 1 }", "not a string or a number"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = expand_args(
                args(&["hub", "serve", "--config", f.to_str().unwrap()]),
                "HUB_",
                |_| None,
            )
            .unwrap_err();
            assert!(format!("{e:#}").contains(says), "{text}: {e:#}");
        }
        let e = expand_args(
            args(&["hub", "serve", "--config", "/nonexistent.toml"]),
            "HUB_",
            |_| None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("reading the config file"));
    }
}
