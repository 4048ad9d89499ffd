//! The command line of every `pup-*` binary in one list, so that man pages
//! and shell completions are generated from the same definitions as
//! `--help` (tests/docs.rs checks that the checked-in copies are current).

use clap::Command;

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
