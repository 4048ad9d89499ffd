//! Which binaries load OpenSSL. A one-shot plain http:// or redis:// check
//! spent 81–88% of its instructions in ld.so relocating libcrypto, so
//! `pup-probe-http` and `pup-probe-redis` must not link it; their `-tls`
//! siblings, which they exec for TLS, must (see src/tls.rs).

mod common;

use std::process::Command;

/// The shared libraries `ldd` lists for `bin` that are OpenSSL's.
fn openssl_libs(bin: &str) -> Vec<String> {
    let out = Command::new("ldd").arg(bin).output().expect("run ldd");
    assert!(out.status.success(), "ldd {bin}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("libssl") || l.contains("libcrypto"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn only_the_tls_siblings_load_openssl() {
    common::need("ldd");
    for plain in [bin!("pup-probe-http"), bin!("pup-probe-redis")] {
        assert_eq!(openssl_libs(plain), Vec::<String>::new(), "{plain}");
    }
    for tls in [bin!("pup-probe-http-tls"), bin!("pup-probe-redis-tls")] {
        let libs = openssl_libs(tls);
        assert!(
            libs.iter().any(|l| l.starts_with("libssl")),
            "{tls}: {libs:?}"
        );
        assert!(
            libs.iter().any(|l| l.starts_with("libcrypto")),
            "{tls}: {libs:?}"
        );
    }
}

/// Without its sibling beside it, `pup-probe-http` still runs plain
/// http:// checks itself, and says in one line what is missing for https.
#[test]
fn a_missing_sibling_is_one_line_and_unknown() {
    let dir = common::TempDir::new("lone");
    let lone = dir.0.join("pup-probe-http");
    std::fs::copy(bin!("pup-probe-http"), &lone).unwrap();
    let r = common::run(lone.to_str().unwrap(), &["https://127.0.0.1:1/"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stdout, "", "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("pup-probe-http-tls"), "{r:?}");
    assert!(r.stderr.contains("cargo install"), "{r:?}");
    // Plain http:// runs without it (refused: down, exit 2).
    let r = common::run(lone.to_str().unwrap(), &["http://127.0.0.1:1/"]);
    assert_eq!(r.code, 2, "{r:?}");
    r.event();
}
