//! The binary's layers, checked on every test run (a tidy test, as rust-analyzer keeps its own):
//! `cmd/` (the commands, the only place that prints for a person) on top, `daemon/` (serve and
//! what it runs) below it, the foundations (every other module) at the bottom. A module may
//! name its own layer and the layers below, never one above: nothing but `main.rs` names
//! `cmd`, and no foundation names `daemon`.

use std::path::Path;

/// The layer of a source file, by its path under `src/`: 2 commands, 1 daemon, 0 foundations
/// (`main.rs`, the entry point, stands above them all).
fn layer(path: &str) -> u8 {
    if path == "main.rs" {
        3
    } else if path.starts_with("cmd/") {
        2
    } else if path.starts_with("daemon/") {
        1
    } else {
        0
    }
}

/// Every reference to a layer above its own in `files` (path under `src/`, text), one line each
/// naming the file, the line and the layer it reaches.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let above = [("crate::cmd", 2), ("crate::daemon", 1)];
    let mut out = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| p != "layers.rs") {
        let mine = layer(path);
        // Without comments; a grouped import (`use crate::{cmd::…, …}`) is read as its paths.
        let code: Vec<&str> = text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect();
        for (n, line) in code.iter().enumerate() {
            let mut names: Vec<String> = vec![line.to_string()];
            if let Some(at) = line.find("crate::{") {
                let group: String = code[n..].concat();
                let inner = &group[at + "crate::{".len()..];
                let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
                names.extend(inner.split(',').map(|p| format!("crate::{}", p.trim())));
            }
            for (name, level) in above {
                if level > mine && names.iter().any(|l| l.contains(name)) {
                    out.push(format!("{path}:{}: names {name}, a layer above its own", n + 1));
                }
            }
        }
    }
    out
}

fn sources(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// Foundations that still print for their commands (a ratchet: the list only shrinks; a module
/// on it that no longer prints fails the test until it is taken off).
const STILL_PRINTING: &[&str] = &["evidence.rs", "ocr.rs", "retention.rs", "sync.rs"];

/// Files outside `cmd/` (and `main.rs`, which prints the one error line) that print to a
/// person's terminal.
fn printing(files: &[(String, String)]) -> Vec<String> {
    let prints = ["println!", "print!(", "eprintln!", "eprint!("];
    let mut out: Vec<String> = files
        .iter()
        .filter(|(p, _)| layer(p) < 2 && p != "layers.rs")
        .filter(|(_, text)| {
            text.lines().any(|l| prints.iter().any(|m| l.split("//").next().unwrap_or_default().contains(m)))
        })
        .map(|(p, _)| p.clone())
        .collect();
    out.sort();
    out
}

#[test]
fn only_the_commands_print() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    assert_eq!(printing(&files), STILL_PRINTING, "printing for a person belongs in cmd/");
}

#[test]
fn no_module_names_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    assert!(files.iter().any(|(p, _)| p.starts_with("cmd/")) && files.iter().any(|(p, _)| p.starts_with("daemon/")));
    let found = violations(&files);
    assert!(found.is_empty(), "layers broken:\n{}", found.join("\n"));
}

#[test]
fn an_upward_edge_is_named() {
    let files = vec![
        ("retention.rs".to_owned(), "use crate::cmd::cli::HoldCmd;\n".to_owned()),
        ("views.rs".to_owned(), "fn f() {\n    crate::daemon::video::encoders();\n}\n".to_owned()),
        ("daemon/serve.rs".to_owned(), "use crate::cmd::cli::ServeArgs; // flags\n".to_owned()),
        ("daemon/panel.rs".to_owned(), "use crate::datadir::DataDir;\n// crate::cmd in a comment\n".to_owned()),
        ("cmd/admin.rs".to_owned(), "use crate::daemon::console;\nuse crate::provision;\n".to_owned()),
        ("sync.rs".to_owned(), "use crate::{\n    datadir::DataDir,\n    daemon::broker,\n};\n".to_owned()),
    ];
    assert_eq!(
        violations(&files),
        [
            "retention.rs:1: names crate::cmd, a layer above its own",
            "views.rs:2: names crate::daemon, a layer above its own",
            "daemon/serve.rs:1: names crate::cmd, a layer above its own",
            "sync.rs:1: names crate::daemon, a layer above its own",
        ]
    );
}

/// Red team (issue 22): the check looks for the text `crate::cmd` / `crate::daemon`, so every
/// other way Rust has to name the same module walks past it: `super::` from a top-level file
/// (or `super::super::` from `daemon/`), a grouped import with a nested group before the
/// upward path, an alias of `crate`, a re-export in `main.rs` (which may name `cmd`), a macro
/// `main.rs` defines, and a line whose string literal holds `//`. Each fixture below reaches a
/// layer above its own, and none is named. Passes while the hole is open (a fix resolves paths
/// from the module tree, e.g. with `syn`, instead of matching text).
#[test]
fn red22_layers_upward_edges_by_other_names_are_not_seen() {
    let files = vec![
        (
            "main.rs".to_owned(),
            "pub use cmd::cli;\nmacro_rules! admin { () => { crate::cmd::admin::run() } }\n".to_owned(),
        ),
        ("retention.rs".to_owned(), "use super::cmd::cli::HoldCmd;\n".to_owned()),
        ("daemon/serve.rs".to_owned(), "use super::super::cmd::cli::ServeArgs;\n".to_owned()),
        ("sync.rs".to_owned(), "use crate::{datadir::{DataDir, WEB_KEY}, daemon::broker};\n".to_owned()),
        (
            "evidence.rs".to_owned(),
            "use crate as root;\nfn f() {\n    root::daemon::video::encoders();\n}\n".to_owned(),
        ),
        ("views.rs".to_owned(), "use crate::cli::HoldCmd;\n".to_owned()),
        ("ocr.rs".to_owned(), "fn f() {\n    admin!();\n}\n".to_owned()),
        ("search.rs".to_owned(), "fn f() {\n    g(\"http://x\", crate::daemon::video::encoders());\n}\n".to_owned()),
    ];
    assert_eq!(violations(&files), Vec::<String>::new());
}

/// Red team (issue 22): "only the commands print" looks for the four print macros, so a
/// foundation that writes to the terminal any other way (`writeln!` to `stdout()`, `write_all`
/// on `stderr()`, `dbg!`) is not named. Passes while the hole is open.
#[test]
fn red22_layers_printing_by_other_means_is_not_seen() {
    let files = vec![
        (
            "pipeline.rs".to_owned(),
            "fn f() {\n    let _ = writeln!(std::io::stdout().lock(), \"sealed {id}\");\n}\n".to_owned(),
        ),
        ("playback.rs".to_owned(), "fn f() {\n    let _ = std::io::stderr().write_all(b\"done\\n\");\n}\n".to_owned()),
        ("daemon/broker.rs".to_owned(), "fn f(x: u8) {\n    dbg!(x);\n}\n".to_owned()),
    ];
    assert_eq!(printing(&files), Vec::<String>::new());
}
