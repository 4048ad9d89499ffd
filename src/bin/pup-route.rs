//! `pup-route`: per-check state and hooks over a stream of result events.
//! See `pup_route --help` and the README; the code is in `pup::route`.
fn main() {
    pup::route::main()
}
