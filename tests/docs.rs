//! The man pages and shell completions in the repository are generated from
//! the same clap definitions as `--help`; this test fails when a checked-in
//! copy is stale. To regenerate them after changing a flag:
//!
//! ```text
//! PUP_UPDATE_DOCS=1 cargo test --test docs
//! ```

mod common;

use clap_complete::Shell;
use std::path::Path;

fn check_or_write(path: &Path, want: &[u8], stale: &mut Vec<String>) {
    if std::env::var_os("PUP_UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, want).unwrap();
        return;
    }
    match std::fs::read(path) {
        Ok(have) if have == want => {}
        _ => stale.push(path.display().to_string()),
    }
}

#[test]
fn man_pages_are_generated_from_the_command_definitions() {
    let mut stale = Vec::new();
    for cmd in pup::tools::commands() {
        let name = cmd.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .date("2026-11")
            .source(format!("puptime {}", env!("CARGO_PKG_VERSION")))
            .manual("Puptime")
            .render(&mut page)
            .unwrap();
        // clap_mangen heads the after-help text "EXTRA"; NOTES is the
        // section name man-pages(7) has for it.
        let page = String::from_utf8(page)
            .unwrap()
            .replace(".SH EXTRA", ".SH NOTES");
        // Every page points to the event schema and its siblings.
        let page = format!(
            "{page}.SH \"SEE ALSO\"\n.BR pup\\-events (7),\n.BR pup\\-hooks (7),\n.BR pup\\-sched (1),\n.BR pup\\-route (1)\n"
        );
        check_or_write(
            &common::root().join(format!("man/{name}.1")),
            page.as_bytes(),
            &mut stale,
        );
    }
    assert!(
        stale.is_empty(),
        "stale man pages (run PUP_UPDATE_DOCS=1 cargo test --test docs): {stale:?}"
    );
}

#[test]
fn shell_completions_are_generated_from_the_command_definitions() {
    let mut stale = Vec::new();
    for mut cmd in pup::tools::commands() {
        let name = cmd.get_name().to_string();
        for (shell, file) in [
            (Shell::Bash, format!("completions/{name}.bash")),
            (Shell::Zsh, format!("completions/_{name}")),
            (Shell::Fish, format!("completions/{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut out);
            check_or_write(&common::root().join(file), &out, &mut stale);
        }
    }
    assert!(
        stale.is_empty(),
        "stale completions (run PUP_UPDATE_DOCS=1 cargo test --test docs): {stale:?}"
    );
}

#[test]
fn every_binary_has_a_man_page_and_completions() {
    let bins: Vec<String> = std::fs::read_dir(common::root().join("src/bin"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let named: Vec<String> = pup::tools::commands()
        .iter()
        .map(|c| c.get_name().to_string())
        .collect();
    for b in &bins {
        let internal = pup::tools::INTERNAL.contains(&b.as_str());
        // An internal binary stands in for a command that has the docs.
        if let Some(front) = b.strip_suffix("-tls").filter(|_| internal) {
            assert!(named.iter().any(|n| n == front), "{b}: no {front}");
            continue;
        }
        assert!(
            named.contains(b),
            "src/bin/{b}.rs has no entry in pup::tools::commands()"
        );
    }
}
