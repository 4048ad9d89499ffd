//! `pup-probe-http` with TLS: what `pup-probe-http` runs (exec) when a
//! run may need TLS. Internal; users run `pup-probe-http`.
fn main() {
    pup::tls::openssl::install();
    pup::probe::main::<pup::probe::http::Http>()
}
