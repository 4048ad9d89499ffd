//! `pup-probe-http`. A run that may need TLS (an https:// argument, a
//! redirect to follow, --ca-file, or --stdin, whose lines are unknown in
//! advance) becomes `pup-probe-http-tls`; the others run here, without
//! loading OpenSSL (see src/tls.rs).
fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // --follow N or --follow=N with N > 0: a redirect may lead to https.
    let follows = args.iter().enumerate().any(|(i, a)| {
        let n = match a.strip_prefix("--follow") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(v) => v.strip_prefix('='),
            None => return false,
        };
        n.is_none_or(|n| n.parse::<u32>() != Ok(0))
    });
    let needed = pup::tls::mentions("https://")
        || follows
        || pup::tls::has_flag("--ca-file")
        || pup::tls::has_flag("--stdin");
    pup::tls::exec_tls_sibling(needed, "pup-probe-http-tls");
    pup::probe::main::<pup::probe::http::Http>()
}
