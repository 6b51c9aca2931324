//! `bench ... --record [FILE]`: append a run's table to BENCHMARKS.md
//! (or FILE) together with the exact command, the machine it ran on, how
//! busy that machine was when it started, the commit, and when. Numbers
//! without those cannot be rerun or compared, and on a shared machine the
//! load average matters as much as the core count.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// The heading recorded runs are appended under (added once, at the end).
pub const HEADING: &str = "## Recorded runs (`bench ... --record`)";

/// What a recorded number depends on besides the code.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
    /// The 1-minute load average when the run started.
    pub load: String,
    /// `node --version`, when the run used the JS baseline.
    pub node: Option<String>,
    /// The commit measured, with "+ uncommitted changes" when the tree
    /// differs from it.
    pub commit: Option<String>,
}

impl Machine {
    /// This machine, now. `node`: ask Node for its version too.
    pub fn here(node: bool) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".into());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        let load = read("/proc/loadavg")
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_owned();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_gib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load,
            node: node.then(|| output("node", &["--version"])).flatten(),
            commit: commit(),
        }
    }
}

/// A command's trimmed standard output, if it ran and succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn commit() -> Option<String> {
    let head = output("git", &["rev-parse", "--short=12", "HEAD"])?;
    let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    })
}

/// The command line as typed, quoted where a shell would need it.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One recorded run: a heading naming what ran and when, the command,
/// the machine, then `report` as the run printed it.
pub fn section(
    what: &str,
    command: &str,
    machine: &Machine,
    at: chrono::DateTime<chrono::Utc>,
    report: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### {what}, {}\n", at.format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(s, "```\n{command}\n```\n");
    let _ = write!(
        s,
        "Machine: {} cores ({}), {:.1} GiB RAM, Linux {}, load average {} at the start",
        machine.cores, machine.cpu, machine.memory_gib, machine.kernel, machine.load
    );
    if let Some(node) = &machine.node {
        let _ = write!(s, ", Node {node}");
    }
    if let Some(commit) = &machine.commit {
        let _ = write!(s, "; commit {commit}");
    }
    let _ = writeln!(s, ".\n\n{}\n", report.trim_end());
    s
}

/// Append `section` to `file` under [`HEADING`], adding the heading at the
/// end of the file the first time. The file must exist: a mistyped path
/// should not quietly start a new one.
pub fn append(file: &Path, section: &str) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(file)
        .with_context(|| format!("reading {} to record the run in", file.display()))?;
    if !text.lines().any(|l| l == HEADING) {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let _ = write!(
            text,
            "\n{HEADING}\n\nAppended by the bench commands; newest last.\n"
        );
    }
    if !text.ends_with("\n\n") {
        text.push('\n');
    }
    text.push_str(section);
    // Written whole to a sibling and renamed over, so an interrupted write
    // leaves the old file, not half of one.
    let tmp = file.with_extension("md.recording");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("replacing {}", file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cores: 2,
            cpu: "AMD EPYC".into(),
            memory_gib: 23.5,
            kernel: "6.18.44".into(),
            load: "0.98".into(),
            node: Some("v20.20.2".into()),
            commit: Some("fe9501f0a1b2".into()),
        }
    }

    #[test]
    fn a_section_names_the_command_the_machine_and_the_time() {
        let at = chrono::DateTime::from_timestamp(1_795_680_000, 0).unwrap();
        let s = section(
            "bench net",
            "target/release/bench net --stores 100",
            &machine(),
            at,
            "| a | b |\n|---|---|\n",
        );
        assert!(s.starts_with("### bench net, 2026-11-26"), "{s}");
        assert!(
            s.contains("```\ntarget/release/bench net --stores 100\n```"),
            "{s}"
        );
        assert!(
            s.contains("Machine: 2 cores (AMD EPYC), 23.5 GiB RAM, Linux 6.18.44, load average 0.98 at the start, Node v20.20.2; commit fe9501f0a1b2."),
            "{s}"
        );
        assert!(s.contains("| a | b |\n|---|---|\n"), "{s}");
    }

    #[test]
    fn the_command_line_is_quoted_where_a_shell_needs_it() {
        let args = [
            "bench",
            "net",
            "--hub-arg=--max-cached-documents=40000",
            "two words",
            "it's",
        ];
        assert_eq!(
            command_line(args.map(String::from)),
            r"bench net --hub-arg=--max-cached-documents=40000 'two words' 'it'\''s'"
        );
    }

    #[test]
    fn runs_are_appended_under_one_heading_in_order_and_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("BENCHMARKS.md");
        assert!(append(&file, "### one\n").is_err(), "no file, no record");
        std::fs::write(&file, "# Benchmarks\n\nEarlier results.").unwrap();
        append(&file, "### first run\n\nnumbers 1\n").unwrap();
        append(&file, "### second run\n\nnumbers 2\n").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.matches(HEADING).count(), 1, "{text}");
        let (head, first, second) = (
            text.find(HEADING).unwrap(),
            text.find("### first run").unwrap(),
            text.find("### second run").unwrap(),
        );
        assert!(
            text.starts_with("# Benchmarks\n\nEarlier results.\n"),
            "{text}"
        );
        assert!(head < first && first < second, "{text}");
        assert!(!dir.path().join("BENCHMARKS.md.recording").exists());
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::here(false);
        assert!(m.cores >= 1);
        assert!(m.memory_gib > 0.0, "{m:?}");
        assert!(!m.kernel.is_empty(), "{m:?}");
        assert_eq!(m.node, None);
    }
}
