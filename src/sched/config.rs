//! pup-sched's config file: one check per line, `NAME EVERY
//! [KEY=VALUE...] COMMAND [ARGS...]`, with comments, `\` continuation
//! lines, `${VAR}` from the environment and `include PATH`.
//!
//! Parsing is pure (the environment comes in as a function) so that every
//! error message can be tested exactly. Every error is one line naming the
//! file, the physical line and the column: `puptime.conf:12:5: …`.

use crate::cli;
use crate::shell::{self, Expand, Word};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The shortest interval accepted: shorter ones would only measure the
/// scheduler.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The longest `timeout=` default: checks rarely need more, and a hung
/// check should not hold its slot for most of a long interval.
pub const DEFAULT_TIMEOUT_CAP: Duration = Duration::from_secs(10);

/// How deep `include` may nest (it also stops include cycles).
const MAX_INCLUDE_DEPTH: usize = 8;

/// The options a check line may set before its command, for messages.
pub const KNOWN_OPTIONS: &str =
    "timeout, retry, jitter, tag.KEY, fail-after, recover-after, remind";

/// One check, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDef {
    pub name: String,
    pub interval: Duration,
    /// The deadline of one run (`timeout=`, default: the smaller of 10 s
    /// and 80 % of the interval).
    pub timeout: Duration,
    /// The interval used while the check is failing (`retry=`).
    pub retry: Option<Duration>,
    /// Up to this much random delay is added to each run (`jitter=`).
    pub jitter: Option<Duration>,
    pub tags: BTreeMap<String, String>,
    /// Alerting policy for pup-route, carried in every result.
    pub fail_after: Option<u32>,
    pub recover_after: Option<u32>,
    pub remind: Option<Duration>,
    /// The command's words, as a shell would split them.
    pub command: Vec<String>,
    /// Where the check is defined (`file:line`), for messages.
    pub origin: String,
}

impl CheckDef {
    /// The command as one line a shell reads back the same.
    pub fn command_line(&self) -> String {
        self.command
            .iter()
            .map(|w| shell::quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Is this a `pup-probe-*` command, fed to a long-lived probe process?
    pub fn is_stream_probe(&self) -> bool {
        Path::new(&self.command[0])
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("pup-probe-"))
    }

    /// Equal in everything that matters to running it (not where it is
    /// written), for reloads.
    pub fn same_as(&self, other: &CheckDef) -> bool {
        CheckDef {
            origin: String::new(),
            ..self.clone()
        } == CheckDef {
            origin: String::new(),
            ..other.clone()
        }
    }
}

/// A config error, displayed as `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Reads the config at `path`, following includes, with `${VAR}` looked
/// up by `env`.
pub fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<CheckDef>, ConfigError> {
    let mut p = Parser {
        env,
        checks: Vec::new(),
        seen: HashMap::new(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!("cannot read: {}", io_msg(&e)),
    })?;
    p.parse(&path.display().to_string(), path, &text, 0)?;
    Ok(p.checks)
}

/// Parses config text (as if read from `file`), for tests and `load`.
pub fn parse_str(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<CheckDef>, ConfigError> {
    let mut p = Parser {
        env,
        checks: Vec::new(),
        seen: HashMap::new(),
    };
    p.parse(file, Path::new(file), text, 0)?;
    Ok(p.checks)
}

fn io_msg(e: &std::io::Error) -> String {
    // "No such file or directory (os error 2)" → without the errno.
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

struct Parser<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    checks: Vec<CheckDef>,
    /// name → `file:line` of its first definition.
    seen: HashMap<String, String>,
}

/// A logical line: physical lines joined at trailing backslashes, with a
/// map from character offsets back to (line, column).
struct Logical {
    text: String,
    /// (offset in `text` in chars, physical line, column of that char).
    segments: Vec<(usize, usize, usize)>,
}

impl Logical {
    fn locate(&self, column: usize) -> (usize, usize) {
        let off = column.saturating_sub(1);
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.0 <= off)
            .unwrap_or(&self.segments[0]);
        (seg.1, seg.2 + (off - seg.0))
    }
}

/// Joins continuation lines. A line ending in an odd number of
/// backslashes continues on the next; comment lines never continue.
fn logical_lines(text: &str) -> Vec<Logical> {
    let mut out = Vec::new();
    let mut cur: Option<Logical> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim_start();
        if cur.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let backslashes = raw.chars().rev().take_while(|&c| c == '\\').count();
        let continues = backslashes % 2 == 1;
        let body = if continues {
            &raw[..raw.len() - 1]
        } else {
            raw
        };
        let l = cur.get_or_insert_with(|| Logical {
            text: String::new(),
            segments: Vec::new(),
        });
        l.segments.push((l.text.chars().count(), line_no, 1));
        l.text.push_str(body);
        if !continues {
            out.extend(cur.take());
        }
    }
    out.extend(cur);
    out
}

impl Parser<'_> {
    fn parse(
        &mut self,
        file: &str,
        path: &Path,
        text: &str,
        depth: usize,
    ) -> Result<(), ConfigError> {
        for logical in logical_lines(text) {
            let err = |column: usize, message: String| {
                let (line, column) = logical.locate(column);
                ConfigError {
                    file: file.to_string(),
                    line,
                    column,
                    message,
                }
            };
            let env = self.env;
            let mut lookup = |name: &str| {
                env(name).ok_or_else(|| format!("environment variable \"{name}\" is not set"))
            };
            let words = shell::split_words(&logical.text, &mut Expand::Config(&mut lookup))
                .map_err(|e| err(e.column, e.message))?;
            if words.is_empty() {
                continue;
            }
            let (line, _) = logical.locate(words[0].column);
            if words[0].text == "include" {
                self.include(path, &words, depth, &err)?;
                continue;
            }
            let def = parse_check(&words, &err, format!("{file}:{line}"))?;
            if let Some(first) = self.seen.get(&def.name) {
                return Err(err(
                    words[0].column,
                    format!(
                        "duplicate check name \"{}\" (first defined at {first})",
                        def.name
                    ),
                ));
            }
            self.seen.insert(def.name.clone(), def.origin.clone());
            self.checks.push(def);
        }
        Ok(())
    }

    fn include(
        &mut self,
        path: &Path,
        words: &[Word],
        depth: usize,
        err: &dyn Fn(usize, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if words.len() != 2 {
            return Err(err(
                words[0].column,
                "include takes one path: include PATH".into(),
            ));
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(err(
                words[1].column,
                format!("includes nest deeper than {MAX_INCLUDE_DEPTH} (an include cycle?)"),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let target = base.join(&words[1].text);
        let files: Vec<PathBuf> = if target.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&target)
                .map_err(|e| {
                    err(
                        words[1].column,
                        format!("cannot read include {}: {}", target.display(), io_msg(&e)),
                    )
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "conf")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            // Name order, so that a duplicate is always reported the same way.
            v.sort();
            v
        } else {
            vec![target]
        };
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| {
                err(
                    words[1].column,
                    format!("cannot read include {}: {}", f.display(), io_msg(&e)),
                )
            })?;
            self.parse(&f.display().to_string(), &f, &text, depth + 1)?;
        }
        Ok(())
    }
}

/// Is `w` an option word (`key=value` with a plain key), as opposed to the
/// start of the command?
fn option_key(w: &str) -> Option<(&str, &str)> {
    let (k, v) = w.split_once('=')?;
    let plain = !k.is_empty()
        && k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    plain.then_some((k, v))
}

fn parse_check(
    words: &[Word],
    err: &dyn Fn(usize, String) -> ConfigError,
    origin: String,
) -> Result<CheckDef, ConfigError> {
    let name = &words[0];
    if name.text.is_empty() || name.text.chars().any(|c| c.is_control()) {
        return Err(err(name.column, "a check name cannot be empty".into()));
    }
    let Some(every) = words.get(1) else {
        return Err(err(
            name.column + name.text.chars().count(),
            format!(
                "check \"{}\" needs an interval and a command: NAME EVERY [KEY=VALUE...] COMMAND [ARGS...]",
                name.text
            ),
        ));
    };
    let interval = cli::parse_duration(&every.text)
        .map_err(|_| {
            err(
                every.column,
                format!(
                    "bad interval \"{}\" (write it like 500ms, 30s, 5m, 1h)",
                    every.text
                ),
            )
        })
        .and_then(|d| {
            if d < MIN_INTERVAL {
                Err(err(
                    every.column,
                    format!(
                        "interval \"{}\" is shorter than the minimum, {}",
                        every.text,
                        cli::format_duration(MIN_INTERVAL)
                    ),
                ))
            } else {
                Ok(d)
            }
        })?;
    let mut def = CheckDef {
        name: name.text.clone(),
        interval,
        timeout: interval.mul_f64(0.8).min(DEFAULT_TIMEOUT_CAP),
        retry: None,
        jitter: None,
        tags: BTreeMap::new(),
        fail_after: None,
        recover_after: None,
        remind: None,
        command: Vec::new(),
        origin,
    };
    let mut timeout_set = None;
    let mut i = 2;
    while let Some(w) = words.get(i) {
        let Some((key, value)) = option_key(&w.text) else {
            break;
        };
        let dur = |what: &str| {
            cli::parse_duration(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    err(
                        w.column,
                        format!(
                            "bad {what}= value \"{value}\" (write a duration like 500ms, 30s, 5m)"
                        ),
                    )
                })
        };
        let count = |what: &str| {
            value
                .parse::<u32>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    err(
                        w.column,
                        format!("bad {what}= value \"{value}\" (write a whole number, 1 or more)"),
                    )
                })
        };
        match key {
            "timeout" => timeout_set = Some((dur("timeout")?, w.column)),
            "retry" => def.retry = Some(dur("retry")?.max(MIN_INTERVAL)),
            "jitter" => def.jitter = Some(dur("jitter")?),
            "fail-after" => def.fail_after = Some(count("fail-after")?),
            "recover-after" => def.recover_after = Some(count("recover-after")?),
            "remind" => def.remind = Some(dur("remind")?),
            k if k.starts_with("tag.") => {
                let (k, v) = cli::parse_tag(&w.text[4..]).map_err(|e| err(w.column, e))?;
                def.tags.insert(k, v);
            }
            _ => {
                return Err(err(
                    w.column,
                    format!("unknown option \"{key}\" (known: {KNOWN_OPTIONS})"),
                ))
            }
        }
        i += 1;
    }
    if let Some((t, column)) = timeout_set {
        if t > interval {
            return Err(err(
                column,
                format!(
                    "timeout {} is longer than the interval {}: runs would overlap",
                    cli::format_duration(t),
                    cli::format_duration(interval)
                ),
            ));
        }
        def.timeout = t;
    }
    if let Some(j) = def.jitter {
        if j >= interval {
            let w = words[2..i]
                .iter()
                .find(|w| w.text.starts_with("jitter="))
                .map_or(every.column, |w| w.column);
            return Err(err(
                w,
                format!(
                    "jitter {} must be shorter than the interval {}",
                    cli::format_duration(j),
                    cli::format_duration(interval)
                ),
            ));
        }
    }
    if i >= words.len() {
        let last = &words[words.len() - 1];
        return Err(err(
            last.column + last.text.chars().count(),
            format!("check \"{}\" has no command", def.name),
        ));
    }
    def.command = words[i..].iter().map(|w| w.text.clone()).collect();
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        (n == "PASS").then(|| "hunter 2".to_string())
    }

    #[test]
    fn a_full_line() {
        let c = parse_str(
            "p.conf",
            "# comment\n\n web  30s retry=10s tag.team=web fail-after=3 \\\n   pup-probe-http https://x/ --contains 'A B' # trailing\n",
            &env,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!(c.name, "web");
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.retry, Some(Duration::from_secs(10)));
        assert_eq!(c.tags["team"], "web");
        assert_eq!(c.fail_after, Some(3));
        assert_eq!(
            c.command,
            ["pup-probe-http", "https://x/", "--contains", "A B"]
        );
        assert_eq!(c.origin, "p.conf:3");
        assert!(c.is_stream_probe());
    }

    #[test]
    fn errors_point_into_continuation_lines() {
        let e = parse_str("p.conf", "a 1s \\\n  retyr=2s cmd\n", &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("p.conf:2:3: unknown option \"retyr\" (known: {KNOWN_OPTIONS})")
        );
    }

    #[test]
    fn short_interval_gets_a_short_default_timeout() {
        let c = parse_str("p", "a 500ms cmd", &env).unwrap();
        assert_eq!(c[0].timeout, Duration::from_millis(400));
    }
}
