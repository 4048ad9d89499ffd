//! `pup-probe-redis` with TLS: what `pup-probe-redis` runs (exec) when a
//! run may need TLS. Internal; users run `pup-probe-redis`.
fn main() {
    pup::tls::openssl::install();
    pup::probe::main::<pup::probe::redis::Redis>()
}
