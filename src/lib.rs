//! Puptime (`pup`): uptime monitoring as a pipeline of small Unix tools.
//!
//! ```text
//! pup-sched puptime.conf | pup-route hooks.d/
//! ```
//!
//! * Probes (`pup-probe-http`, `pup-probe-dns`, `pup-probe-redis`) each
//!   check one kind of service with the precision of its own protocol and
//!   print what they saw as NDJSON result events ([`event`]). They run
//!   one-shot from a shell or cron, with Nagios exit codes, or in stream
//!   mode over many targets on stdin. The shared driver is [`probe`].
//! * `pup-sched` runs every check of a config on its interval.
//! * `pup-route` keeps state per check, decides when a service is down,
//!   recovered, flapping, changed or silent, and runs the user's hooks.
//!
//! Every binary in `src/bin` is a few lines over this library; everything
//! that can be tested without starting a process lives here.

pub mod cli;
pub mod event;
pub mod ndjson;
pub mod probe;
pub mod route;
pub mod sched;
pub mod shell;
pub mod tls;
pub mod tools;
