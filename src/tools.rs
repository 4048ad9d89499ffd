//! The command line of every `pup-*` binary in one list, so that man pages
//! and shell completions are generated from the same definitions as
//! `--help` (tests/docs.rs checks that the checked-in copies are current).

use clap::Command;

/// Binaries that are not commands of their own, so without man page or
/// completions: the TLS-capable twins that `pup-probe-http` and
/// `pup-probe-redis` exec when a run may need TLS (see src/tls.rs). They
/// take exactly the arguments of the command they stand in for.
pub const INTERNAL: &[&str] = &["pup-probe-http-tls", "pup-probe-redis-tls"];

/// Every binary's full command definition, in the order the docs list them.
pub fn commands() -> Vec<Command> {
    use crate::probe::{self, dns::Dns, http::Http, redis::Redis};
    vec![
        probe::command::<Dns>(),
        probe::command::<Http>(),
        probe::command::<Redis>(),
        crate::sched::command(),
        crate::route::command(),
    ]
}
