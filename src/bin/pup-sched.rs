//! `pup-sched`: see `pup::sched`.
fn main() {
    std::process::exit(pup::sched::main(std::env::args_os().collect()));
}
