//! What every binary shares on the command line: value parsers for the
//! flags (durations, sizes, tags), exit codes as named values, one-line
//! diagnostics on stderr, and the quiet exit on a closed stdout.

use std::io::{self, Write};
use std::time::Duration;

/// Exit codes of `pup-sched` and `pup-route` (probes exit with their
/// result's [`crate::event::Status::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Ran and ended as asked.
    Ok = 0,
    /// Failed while running (I/O error, a lost child).
    Runtime = 1,
    /// Bad usage or a bad config: nothing was started.
    Usage = 2,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Prints `prog: message` on stderr. Errors writing to stderr are ignored:
/// there is nowhere left to report them.
pub fn warn(prog: &str, message: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "{prog}: {message}");
}

/// Is this the error a write to a closed pipe gives?
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Ends the process after a failed write to stdout: quietly with `code`
/// when the reader has gone away (`| head -1`), otherwise with a one-line
/// error and exit code 1.
pub fn exit_on_write_error(prog: &str, e: &io::Error, code: i32) -> ! {
    if is_broken_pipe(e) {
        std::process::exit(code);
    }
    warn(prog, format!("cannot write to stdout: {e}"));
    std::process::exit(1);
}

/// Parses a duration written like `500ms`, `30s`, `5m`, `1h30m`, `14d`.
/// A bare number is refused: a unit is always required, so `--timeout 5`
/// cannot silently mean five milliseconds or five minutes.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration (write it like 500ms, 30s, 5m)".into());
    }
    if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("duration {s:?} needs a unit, like {t}s or {t}ms"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("bad duration {s:?}: {e} (write it like 500ms, 30s, 5m)"))
}

/// Writes a duration the way [`parse_duration`] reads it, shortest form
/// (`1m30s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// Parses a size: `1048576`, `64KiB`, `1MiB`, `10MB`, `2GiB` (also `k`,
/// `m`, `g` as binary units, as curl's `--max-filesize` users write them).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?} (write it like 1048576, 64KiB, 1MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "bad size unit in {s:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses `KEY=VALUE` for `--tag`. Keys are plain words so that they can
/// travel as `tag.KEY` in configs and environment variables.
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("tag {s:?} is not KEY=VALUE"))?;
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(format!(
            "tag key {k:?} must be letters, digits, '_', '-' or '.'"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Reads a secret from a file: the first line, without its newline, so
/// that `echo secret > file` works. Capped at 4 KiB.
pub fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut s = String::new();
    f.take(4096)
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(s.lines().next().unwrap_or("").to_string())
}

/// The first line of a (clap) error message, without clap's `error: `
/// prefix: usage errors are one line.
pub fn first_line(msg: &str) -> String {
    let line = msg
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad usage");
    line.trim_start_matches("error: ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("fast")
            .unwrap_err()
            .starts_with("bad duration"));
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn tags() {
        assert_eq!(
            parse_tag("team=web").unwrap(),
            ("team".into(), "web".into())
        );
        assert_eq!(parse_tag("k=a=b").unwrap().1, "a=b");
        assert!(parse_tag("noequals").is_err());
        assert!(parse_tag("bad key=x").is_err());
    }

    #[test]
    fn first_line_strips_clap_prefix() {
        assert_eq!(
            first_line("error: unexpected argument '--x' found\n\nUsage: ..."),
            "unexpected argument '--x' found"
        );
    }
}
