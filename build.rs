//! Build script: on Linux with glibc, links GCC's unwinder statically, so
//! that no `pup-*` binary loads `libgcc_s.so.1` when it starts.
//!
//! Why: a one-shot probe is mostly process start-up, and libgcc_s costs
//! one more library to map and relocate plus a constructor that probes
//! the CPU (`cpuid`, which traps to the hypervisor on a virtual machine).
//! Without it one-shot pup-probe-http used ~0.25 ms less CPU (perf stat,
//! 3 alternating runs of 150) and 0.13 MiB less peak RSS.
//!
//! How: Rust's std links its unwinder with `-lgcc_s`. A linker script
//! named `libgcc_s.so` in a directory the linker searches first turns
//! that into GCC's static unwinder, `libgcc_eh.a`, which is what
//! `gcc -static-libgcc` links into C programs. Panics unwind as before
//! (the unit tests panic on purpose and catch it). Where the C compiler
//! does not know `libgcc_eh.a`, or when cross-compiling, nothing changes.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let is = |var: &str, value: &str| env::var(var).is_ok_and(|v| v == value);
    if !is("CARGO_CFG_TARGET_OS", "linux") || !is("CARGO_CFG_TARGET_ENV", "gnu") {
        return;
    }
    if env::var("HOST").ok() != env::var("TARGET").ok() {
        return;
    }
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(out) = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    // The compiler prints the bare name back when it has no such file.
    let eh = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !eh.is_absolute() || !eh.is_file() {
        return;
    }
    // A compiler upgrade that removes this file must not leave a script
    // pointing at it.
    println!("cargo:rerun-if-changed={}", eh.display());
    let dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("unwinder");
    fs::create_dir_all(&dir).expect("create OUT_DIR/unwinder");
    fs::write(
        dir.join("libgcc_s.so"),
        format!(
            "/* -lgcc_s means the static unwinder: see build.rs */\nINPUT(\"{}\")\n",
            eh.display()
        ),
    )
    .expect("write OUT_DIR/unwinder/libgcc_s.so");
    println!("cargo:rustc-link-search=native={}", dir.display());
}
