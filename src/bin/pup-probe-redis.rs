//! `pup-probe-redis`. A run that may need TLS (a rediss:// argument,
//! --ca-file, or --stdin, whose lines are unknown in advance) becomes
//! `pup-probe-redis-tls`; the others run here, without loading OpenSSL
//! (see src/tls.rs).
fn main() {
    let needed = pup::tls::mentions("rediss://")
        || pup::tls::has_flag("--ca-file")
        || pup::tls::has_flag("--stdin");
    pup::tls::exec_tls_sibling(needed, "pup-probe-redis-tls");
    pup::probe::main::<pup::probe::redis::Redis>()
}
