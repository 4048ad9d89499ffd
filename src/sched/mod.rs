//! `pup-sched`: runs every configured check on its interval and prints
//! every result as an event.
//!
//! * [`config`] reads the config file (pure, every error exact).
//! * [`nagios`] reads monitoring-plugins output and perfdata.
//! * [`exec`] runs one command in its own process group under a deadline.
//! * [`pool`] keeps one long-lived `pup-probe-X --stdin` per probe program
//!   and feeds it checks as lines, so a check costs no new process.
//! * [`run`] is the scheduler loop: spread, no overlap, retry, jitter,
//!   heartbeats, reload on SIGHUP, drain on SIGTERM.

pub mod config;
pub mod exec;
pub mod nagios;
pub mod pool;
pub mod run;

use crate::cli::{self, Exit};
use clap::{Arg, ArgAction, Command};
use std::time::Duration;

const PROG: &str = "pup-sched";

const AFTER_HELP: &str = "\
Config (one check per line; the command is run directly, no shell):
  # NAME     EVERY [KEY=VALUE...]        COMMAND [ARGS...]
  web        30s   retry=10s tag.team=web pup-probe-http https://example.org/ --contains Welcome
  ns1        1m    fail-after=2           pup-probe-dns --server 127.0.0.1 example.org A
  mail       5m    timeout=20s            /usr/lib/nagios/plugins/check_smtp -H mail.example
  include conf.d

  Options: timeout=DUR (default: 80% of the interval, at most 10s), retry=DUR
  (interval while failing), jitter=DUR (random delay added to each run),
  tag.KEY=VALUE, fail-after=N, recover-after=N, remind=DUR (policy carried
  in every result for pup-route). Comments (#), blank lines, a trailing \\
  continues a line, ${VAR} comes from the environment (an unset variable is
  an error), `include PATH` reads a file or a directory of *.conf.

Running:
  Each check runs at a stable offset inside its interval, derived from its
  name (FNV-1a), so a restart does not move it. A check still running when
  it is due again is skipped; the count travels in the next result
  (`skipped`). A run past its timeout has its whole process group killed
  (SIGTERM, then SIGKILL 500ms later) and gives a `down` result of kind
  `timeout`. pup-probe-* commands are fed as lines to one long-lived
  `pup-probe-X --stdin -j N` per program; other commands run one process
  per check. A command that prints result events is used as it is; any
  other is read as a Nagios plugin (exit 0/1/2/3, first line, perfdata).

Signals:
  SIGHUP reloads the config (unchanged checks keep their schedule; a bad
  config is reported and the old one kept). SIGTERM/SIGINT stop scheduling,
  wait up to --grace for running checks, flush and exit 0.

Exit status: 0 stopped by a signal or --check passed, 1 runtime failure,
2 bad usage or config.

Examples:
  pup-sched --check puptime.conf
  pup-sched puptime.conf | pup-route hooks.d/
  pup-sched --heartbeat 10s puptime.conf | jq -c 'select(.status != \"up\")'";

/// The full command line; the man page is generated from it.
pub fn command() -> Command {
    Command::new(PROG)
        .version(env!("CARGO_PKG_VERSION"))
        .about("Run every configured check on its interval and print each result as an event")
        .after_help(AFTER_HELP)
        .arg(
            Arg::new("config")
                .value_name("CONFIG")
                .required(true)
                .help("The config file (see below)"),
        )
        .arg(
            Arg::new("check")
                .long("check")
                .action(ArgAction::SetTrue)
                .help("Validate the config, list its checks with their offsets, and exit 0 (valid) or 2"),
        )
        .arg(
            Arg::new("heartbeat")
                .long("heartbeat")
                .value_name("DUR")
                .default_value("30s")
                .value_parser(cli::parse_duration)
                .help("Print a heartbeat event this often (and once at start)"),
        )
        .arg(
            Arg::new("grace")
                .long("grace")
                .value_name("DUR")
                .default_value("10s")
                .value_parser(cli::parse_duration)
                .help("On SIGTERM/SIGINT, wait this long for running checks before killing them"),
        )
        .arg(
            Arg::new("probe-jobs")
                .long("probe-jobs")
                .value_name("N")
                .default_value("64")
                .value_parser(clap::value_parser!(u32).range(1..=10_000))
                .help("Checks in flight at once in each long-lived probe (its -j)"),
        )
        .arg(
            Arg::new("max-output")
                .long("max-output")
                .value_name("SIZE")
                .default_value("64KiB")
                .value_parser(cli::parse_size)
                .help("Keep at most this much of what one command prints; the rest is read and dropped"),
        )
        .arg(
            Arg::new("no-stream")
                .long("no-stream")
                .action(ArgAction::SetTrue)
                .help("Run pup-probe-* commands one process per check too, like any other command"),
        )
}

/// Options of a running scheduler.
#[derive(Debug, Clone)]
pub struct Opts {
    pub heartbeat: Duration,
    pub grace: Duration,
    pub probe_jobs: u32,
    pub max_output: usize,
    pub stream: bool,
}

/// The stable offset of a check inside its interval: FNV-1a (64-bit) of
/// its name, modulo the interval in microseconds. Written out rather than
/// std's `DefaultHasher`, whose output may change between Rust versions:
/// the offset must not move across upgrades, restarts or machines.
pub fn offset(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let us = interval.as_micros().max(1) as u64;
    Duration::from_micros(h % us)
}

/// Runs pup-sched with `argv`; returns the exit code.
pub fn main(argv: Vec<std::ffi::OsString>) -> i32 {
    let m = match command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(e.kind(), DisplayHelp | DisplayVersion) {
                let _ = e.print();
                return Exit::Ok.code();
            }
            cli::warn(
                PROG,
                format!("{} (see --help)", cli::first_line(&e.to_string())),
            );
            return Exit::Usage.code();
        }
    };
    let path = std::path::PathBuf::from(m.get_one::<String>("config").expect("required"));
    let env = |n: &str| std::env::var(n).ok();
    let checks = match config::load(&path, &env) {
        Ok(c) => c,
        Err(e) => {
            cli::warn(PROG, e);
            return Exit::Usage.code();
        }
    };
    if m.get_flag("check") {
        return list(&checks);
    }
    let opts = Opts {
        heartbeat: *m.get_one::<Duration>("heartbeat").expect("default"),
        grace: *m.get_one::<Duration>("grace").expect("default"),
        probe_jobs: *m.get_one::<u32>("probe-jobs").expect("default"),
        max_output: usize::try_from(*m.get_one::<u64>("max-output").expect("default"))
            .unwrap_or(usize::MAX),
        stream: !m.get_flag("no-stream"),
    };
    if opts.heartbeat.is_zero() {
        cli::warn(PROG, "--heartbeat must be longer than 0s (see --help)");
        return Exit::Usage.code();
    }
    run::run(path, checks, opts)
}

/// `--check`: one line per check, then a count.
fn list(checks: &[config::CheckDef]) -> i32 {
    use std::io::Write;
    let mut out = String::new();
    for c in checks {
        let mut opts = vec![format!("timeout={}", cli::format_duration(c.timeout))];
        if let Some(d) = c.retry {
            opts.push(format!("retry={}", cli::format_duration(d)));
        }
        if let Some(d) = c.jitter {
            opts.push(format!("jitter={}", cli::format_duration(d)));
        }
        for (k, v) in &c.tags {
            opts.push(format!("tag.{k}={}", crate::shell::quote(v)));
        }
        if let Some(n) = c.fail_after {
            opts.push(format!("fail-after={n}"));
        }
        if let Some(n) = c.recover_after {
            opts.push(format!("recover-after={n}"));
        }
        if let Some(d) = c.remind {
            opts.push(format!("remind={}", cli::format_duration(d)));
        }
        let off = offset(&c.name, c.interval);
        out.push_str(&format!(
            "{}\t{}\toffset={:.3}s\t{}\t{}\n",
            c.name,
            cli::format_duration(c.interval),
            off.as_secs_f64(),
            opts.join(" "),
            c.command_line()
        ));
    }
    out.push_str(&format!("{} checks OK\n", checks.len()));
    let mut so = std::io::stdout().lock();
    if let Err(e) = so.write_all(out.as_bytes()).and_then(|_| so.flush()) {
        cli::exit_on_write_error(PROG, &e, Exit::Ok.code());
    }
    Exit::Ok.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_fnv1a_and_stable() {
        // Pinned values: if these change, every check moves on upgrade.
        // FNV-1a 64 of "web" is 0x5ea0e11948721ef1.
        let o = offset("web", Duration::from_secs(60));
        assert_eq!(o, Duration::from_micros(0x5ea0_e119_4872_1ef1 % 60_000_000));
        assert_eq!(o, Duration::from_micros(44_801_521));
        assert_ne!(o, offset("web2", Duration::from_secs(60)));
    }
}
