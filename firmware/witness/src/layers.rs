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

/// The layer a module of the crate belongs to, by its path from the crate root.
fn module_layer(path: &[String]) -> u8 {
    match path.first().map(String::as_str) {
        Some("cmd") => 2,
        Some("daemon") => 1,
        _ => 0,
    }
}

/// The module path of a source file under `src/` (`daemon/serve.rs` is `daemon::serve`).
fn module_of(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "main")) {
        parts.pop();
    }
    parts
}

/// One token as the checker reads it: an identifier, `::`, a brace group's insides, or anything
/// else (which ends a path).
#[derive(Clone, Debug)]
enum Tok {
    Ident(String, usize),
    Colons,
    Braces(Vec<Tok>),
    Group(Vec<Tok>),
    Other(char),
    /// A literal, as written (a string keeps its quotes).
    Lit(String, usize),
}

/// Rust's tokens (comments dropped, literals opaque) with `::` joined and groups nested.
fn tokens(stream: proc_macro2::TokenStream) -> Vec<Tok> {
    use proc_macro2::{Delimiter, Spacing, TokenTree};
    let mut out = Vec::new();
    let mut iter = stream.into_iter().peekable();
    while let Some(t) = iter.next() {
        match t {
            TokenTree::Ident(i) => out.push(Tok::Ident(i.to_string(), i.span().start().line)),
            TokenTree::Punct(p) if p.as_char() == ':' && p.spacing() == Spacing::Joint => {
                if matches!(iter.peek(), Some(TokenTree::Punct(q)) if q.as_char() == ':') {
                    iter.next();
                    out.push(Tok::Colons);
                } else {
                    out.push(Tok::Other(':'));
                }
            }
            TokenTree::Punct(p) => out.push(Tok::Other(p.as_char())),
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => out.push(Tok::Braces(tokens(g.stream()))),
            TokenTree::Group(g) => out.push(Tok::Group(tokens(g.stream()))),
            TokenTree::Literal(l) => out.push(Tok::Lit(l.to_string(), l.span().start().line)),
        }
    }
    out
}

/// What the checker knows inside one module: where it is and the names it gave to modules.
struct Scope {
    module: Vec<String>,
    aliases: Vec<(String, Vec<String>)>,
}

impl Scope {
    /// The crate path a path's first segment starts from, or `None` for a name outside the
    /// crate (another crate, a local item). `main.rs` sees the crate's modules by their names.
    fn start(&self, first: &str) -> Option<Vec<String>> {
        match first {
            "crate" | "$crate" => Some(vec![]),
            "self" => Some(self.module.clone()),
            "super" => Some(self.module[..self.module.len().saturating_sub(1)].to_vec()),
            _ => {
                if let Some((_, to)) = self.aliases.iter().rev().find(|(a, _)| a == first) {
                    return Some(to.clone());
                }
                (self.module.is_empty() && ["cmd", "daemon"].contains(&first)).then(|| vec![first.to_owned()])
            }
        }
    }
}

/// Every crate path named in `toks` (with the line it starts on), use-trees expanded, `super`
/// and aliases resolved; `use X as Y` adds Y to the scope.
fn paths(toks: &[Tok], scope: &mut Scope, out: &mut Vec<(Vec<String>, usize, bool)>) {
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(m, _) if m == "mod" => {
                // An inline module: its insides are one level down.
                if let (Some(Tok::Ident(name, _)), Some(Tok::Braces(inner))) = (toks.get(i + 1), toks.get(i + 2)) {
                    let mut inner_scope =
                        Scope { module: [scope.module.clone(), vec![name.clone()]].concat(), aliases: vec![] };
                    paths(inner, &mut inner_scope, out);
                    i += 3;
                    continue;
                }
                i += 1;
            }
            Tok::Ident(u, _) if u == "use" => {
                let end = toks[i..].iter().position(|t| matches!(t, Tok::Other(';'))).map_or(toks.len(), |e| i + e);
                let public = i > 0 && matches!(&toks[i - 1], Tok::Ident(p, _) if p == "pub")
                    || i > 1 && matches!(&toks[i - 2], Tok::Ident(p, _) if p == "pub");
                use_tree(&toks[i + 1..end], None, scope, public, out);
                i = end + 1;
            }
            Tok::Ident(e, _)
                if e == "extern"
                    && matches!(toks.get(i + 1), Some(Tok::Ident(c, _)) if c == "crate")
                    && matches!(toks.get(i + 2), Some(Tok::Ident(s, _)) if s == "self") =>
            {
                // `extern crate self as w;` names the crate root without a `use`.
                if let Some(Tok::Ident(alias, _)) = toks.get(i + 4) {
                    scope.aliases.push((alias.clone(), vec![]));
                }
                i += 5;
            }
            Tok::Ident(m, line) if m == "include" && matches!(toks.get(i + 1), Some(Tok::Other('!'))) => {
                // Another file's text pasted in: what it names is not read here.
                out.push((vec!["<include!>".into()], *line, false));
                i += 2;
            }
            Tok::Ident(first, line) => {
                // A path in code: IDENT :: IDENT :: ... (a `$crate` in a macro is `$` then `crate`).
                let after_dollar = i > 0 && matches!(toks[i - 1], Tok::Other('$'));
                let name = if after_dollar && first == "crate" { "$crate" } else { first.as_str() };
                let preceded_by_colons = i > 0 && matches!(toks[i - 1], Tok::Colons);
                if !preceded_by_colons
                    && matches!(toks.get(i + 1), Some(Tok::Colons))
                    && let Some(mut at) = scope.start(name)
                {
                    let mut j = i + 1;
                    while let (Some(Tok::Colons), Some(Tok::Ident(seg, _))) = (toks.get(j), toks.get(j + 1)) {
                        match seg.as_str() {
                            "super" => {
                                at.pop();
                            }
                            "self" => {}
                            _ => at.push(seg.clone()),
                        }
                        j += 2;
                    }
                    out.push((at, *line, false));
                    i = j;
                    continue;
                }
                i += 1;
            }
            Tok::Braces(inner) | Tok::Group(inner) => {
                // `#[path = "…"] mod x;` compiles another layer's file as this one's module.
                if let (Some(Tok::Ident(a, line)), Some(Tok::Other('='))) = (inner.first(), inner.get(1))
                    && a == "path"
                    && i > 0
                    && matches!(toks[i - 1], Tok::Other('#'))
                {
                    out.push((vec!["<#[path] module>".into()], *line, false));
                }
                paths(inner, scope, out);
                i += 1;
            }
            Tok::Lit(text, line) => {
                // A path written in a string (serde's `serialize_with = "crate::daemon::…"`).
                let inner = text.trim_matches('"');
                let mut segs = inner.split("::");
                if let Some(first) = segs.next()
                    && inner.contains("::")
                    && let Some(mut at) = scope.start(first)
                {
                    for seg in segs {
                        match seg {
                            "super" => {
                                at.pop();
                            }
                            "self" => {}
                            _ => at.push(seg.to_owned()),
                        }
                    }
                    out.push((at, *line, false));
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
}

/// One `use` tree (the tokens between `use` and `;`), relative to `prefix` inside a group.
fn use_tree(
    toks: &[Tok],
    prefix: Option<Vec<String>>,
    scope: &mut Scope,
    public: bool,
    out: &mut Vec<(Vec<String>, usize, bool)>,
) {
    // Split a group's items at top-level commas.
    let items: Vec<&[Tok]> = toks.split(|t| matches!(t, Tok::Other(','))).filter(|s| !s.is_empty()).collect();
    for item in items {
        let mut at = prefix.clone();
        let mut line = 0;
        let mut k = 0;
        while k < item.len() {
            match &item[k] {
                Tok::Ident(seg, _) if seg == "as" => {
                    if let (Some(Tok::Ident(alias, _)), Some(to)) = (item.get(k + 1), at.clone()) {
                        scope.aliases.push((alias.clone(), to));
                    }
                    k += 2;
                }
                Tok::Ident(seg, l) => {
                    line = *l;
                    at = match at {
                        None => scope.start(seg).or(Some(vec!["<extern>".into(), seg.clone()])),
                        Some(mut p) => {
                            match seg.as_str() {
                                "super" => {
                                    p.pop();
                                }
                                "self" => {}
                                _ => p.push(seg.clone()),
                            }
                            Some(p)
                        }
                    };
                    k += 1;
                }
                Tok::Colons => k += 1,
                Tok::Braces(inner) => {
                    use_tree(inner, at.clone().or(Some(vec![])), scope, public, out);
                    at = None;
                    k += 1;
                }
                _ => k += 1,
            }
        }
        let glob = item.iter().any(|t| matches!(t, Tok::Other('*')));
        if glob && at.as_ref().is_some_and(|p| p.is_empty()) {
            // `use crate::*` (or `super::*` at the top): the root's modules, `cmd` and `daemon`
            // among them, come into scope under their bare names.
            out.push((vec!["<glob of the crate root>".into()], line, public));
            continue;
        }
        if let Some(p) = at
            && p.first().map(String::as_str) != Some("<extern>")
        {
            // A plain `use name;` of a sibling module names it too.
            if !p.is_empty() || line > 0 {
                out.push((p, line, public));
            }
        }
    }
}

/// Every reference to a layer above its own in `files` (path under `src/`, text), one line each
/// naming the file, the line and the layer it reaches. Paths are read as Rust reads them
/// (tokens, not text: comments and strings are not code), `use` groups expanded, `super::` and
/// aliases of `crate` resolved; a `pub use` from outside a layer re-exports it under another
/// name, and a macro's body is checked as if it were used at the bottom, since it is expanded
/// wherever it is called.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| p != "layers.rs") {
        let mine = layer(path);
        let stream: proc_macro2::TokenStream = match text.parse() {
            Ok(s) => s,
            Err(e) => {
                out.push(format!("{path}: cannot be read as Rust tokens: {e}"));
                continue;
            }
        };
        let toks = tokens(stream);
        let mut scope = Scope { module: module_of(path), aliases: vec![] };
        let mut found = Vec::new();
        paths(&toks, &mut scope, &mut found);
        for (target, line, public) in found {
            if let Some(marker) = target.first().filter(|t| t.starts_with('<')) {
                if mine < 2 {
                    let what = match marker.as_str() {
                        "<glob of the crate root>" => "glob-imports the crate root, bringing cmd and daemon into scope",
                        "<#[path] module>" => "compiles a file by #[path], which may be another layer's",
                        _ => "pastes a file in with include!, which may be another layer's",
                    };
                    out.push(format!("{path}:{line}: {what}"));
                }
                continue;
            }
            let level = module_layer(&target);
            let name = format!("crate::{}", target.first().map(String::as_str).unwrap_or(""));
            let inside = target.first() == scope.module.first();
            if level > mine {
                out.push(format!("{path}:{line}: names {name}, a layer above its own"));
            } else if public && level > 0 && !inside {
                out.push(format!("{path}:{line}: re-exports {name} under another name"));
            }
        }
        for (alias, to) in &scope.aliases {
            if to.is_empty() {
                out.push(format!("{path}: names the crate `{alias}`: name its modules by their own paths"));
            }
        }
        // Macro bodies: expanded where they are called, so read as the bottom layer.
        let mut i = 0;
        while i + 3 < toks.len() {
            if let (Tok::Ident(m, line), Tok::Other('!'), Tok::Ident(_, _)) = (&toks[i], &toks[i + 1], &toks[i + 2])
                && m == "macro_rules"
                && let Tok::Braces(body) | Tok::Group(body) = &toks[i + 3]
            {
                let mut found = Vec::new();
                let mut at_root = Scope { module: vec![], aliases: vec![] };
                paths(body, &mut at_root, &mut found);
                for (target, _, _) in found {
                    if module_layer(&target) > 0 && target.first() != scope.module.first() {
                        let name = format!("crate::{}", target[0]);
                        out.push(format!("{path}:{line}: a macro names {name}, and runs wherever it is called"));
                    }
                }
            }
            i += 1;
        }
    }
    out.sort();
    out.dedup();
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

/// Foundations that print for a person: only `local_console.rs`, on purpose — a new admin
/// password goes to the controlling terminal (`/dev/tty`) or the local console, never stdout or
/// a log. Any other fails the test.
const STILL_PRINTING: &[&str] = &["local_console.rs"];

/// Files outside `cmd/` (and `main.rs`, which prints the one error line) that print to a
/// person's terminal: the print macros and `dbg!`, or the process's own `stdout()`/`stderr()`
/// (a method of that name on something else, like a child's `Command`, is not printing).
fn printing(files: &[(String, String)]) -> Vec<String> {
    fn prints(toks: &[Tok]) -> bool {
        toks.iter().enumerate().any(|(i, t)| match t {
            Tok::Ident(m, _) if ["println", "print", "eprintln", "eprint", "dbg"].contains(&m.as_str()) => {
                matches!(toks.get(i + 1), Some(Tok::Other('!')))
            }
            // The process's own streams: called, or named by path (an alias, a function value).
            Tok::Ident(m, _) if m == "stdout" || m == "stderr" => match i.checked_sub(1).map(|p| &toks[p]) {
                Some(Tok::Other('.')) => false,
                Some(Tok::Colons) => true,
                _ => matches!(toks.get(i + 1), Some(Tok::Group(g)) if g.is_empty()),
            },
            // Raw writes to a descriptor, or the streams opened as files.
            Tok::Ident(w, _) if w == "write" => {
                i >= 2 && matches!(toks[i - 1], Tok::Colons) && matches!(&toks[i - 2], Tok::Ident(l, _) if l == "libc")
            }
            Tok::Lit(text, _) => ["/dev/stdout", "/dev/stderr", "/dev/tty"].iter().any(|d| text.contains(d)),
            Tok::Braces(inner) | Tok::Group(inner) => prints(inner),
            _ => false,
        })
    }
    let mut out: Vec<String> = files
        .iter()
        .filter(|(p, _)| layer(p) < 2 && p != "layers.rs")
        .filter(|(_, text)| text.parse::<proc_macro2::TokenStream>().map(|s| prints(&tokens(s))).unwrap_or(true))
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
            "daemon/serve.rs:1: names crate::cmd, a layer above its own",
            "retention.rs:1: names crate::cmd, a layer above its own",
            "sync.rs:3: names crate::daemon, a layer above its own",
            "views.rs:2: names crate::daemon, a layer above its own",
        ]
    );
}

/// Red team (issue 22): the check looked for the text `crate::cmd` / `crate::daemon`, so every
/// other way Rust has to name the same module walked past it: `super::` from a top-level file
/// (or `super::super::` from `daemon/`), a grouped import with a nested group before the
/// upward path, an alias of `crate`, a re-export in `main.rs` (which may name `cmd`), a macro
/// `main.rs` defines, and a line whose string literal holds `//`. Each is named now.
#[test]
fn red22_layers_upward_edges_by_other_names_are_named() {
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
        ("search.rs".to_owned(), "fn f() {\n    g(\"http://x\", crate::daemon::video::encoders());\n}\n".to_owned()),
        (
            "playback.rs".to_owned(),
            "mod inner {\n    fn f() {\n        super::super::daemon::rdp::start();\n    }\n}\n".to_owned(),
        ),
    ];
    assert_eq!(
        violations(&files),
        [
            "daemon/serve.rs:1: names crate::cmd, a layer above its own",
            "evidence.rs: names the crate `root`: name its modules by their own paths",
            "evidence.rs:3: names crate::daemon, a layer above its own",
            "main.rs:1: re-exports crate::cmd under another name",
            "main.rs:2: a macro names crate::cmd, and runs wherever it is called",
            "playback.rs:3: names crate::daemon, a layer above its own",
            "retention.rs:1: names crate::cmd, a layer above its own",
            "search.rs:2: names crate::daemon, a layer above its own",
            "sync.rs:1: names crate::daemon, a layer above its own",
        ]
    );
}

/// Red team (issue 22): "only the commands print" looked for the four print macros, so a
/// foundation that wrote to the terminal any other way (`writeln!` to `stdout()`, `write_all`
/// on `stderr()`, `dbg!`) was not named. They are now; a child's `.stderr(..)` is not printing.
#[test]
fn red22_layers_printing_by_other_means_is_named() {
    let files = vec![
        (
            "pipeline.rs".to_owned(),
            "fn f() {\n    let _ = writeln!(std::io::stdout().lock(), \"sealed {id}\");\n}\n".to_owned(),
        ),
        ("playback.rs".to_owned(), "fn f() {\n    let _ = std::io::stderr().write_all(b\"done\\n\");\n}\n".to_owned()),
        ("daemon/broker.rs".to_owned(), "fn f(x: u8) {\n    dbg!(x);\n}\n".to_owned()),
        ("ocr.rs".to_owned(), "fn f() {\n    Command::new(\"t\").stderr(Stdio::null()); // println!\n}\n".to_owned()),
    ];
    assert_eq!(printing(&files), ["daemon/broker.rs", "pipeline.rs", "playback.rs"]);
}

/// Red team h-red22b: the token reader still lets a foundation reach `daemon/` (or `cmd/`) by
/// Rust's other ways of naming a module, each compiled by rustc 2024 as shown: a glob import
/// of the crate root (`use crate::*;` or, from a top-level file, `use super::*;`) brings the
/// root's private `mod daemon` into scope, so a bare `daemon::…` path follows; `extern crate
/// self as w;` names the crate without a `use`; `#[path = "daemon/serve.rs"] mod s;` compiles
/// the daemon's file again as a foundation module; `include!` pastes it in; serde's
/// `serialize_with = "crate::daemon::…"` names a path inside a string. Every one of them passes
/// the check before (this test passed while the holes were open); each is named now.
#[test]
fn red22b_layers_upward_edges_by_glob_extern_crate_self_path_include_and_strings_are_named() {
    let files = vec![
        ("retention.rs".to_owned(), "use crate::*;\nfn f() {\n    daemon::serve::run();\n}\n".to_owned()),
        ("sync.rs".to_owned(), "use super::*;\nfn f() {\n    cmd::admin::run();\n}\n".to_owned()),
        ("search.rs".to_owned(), "fn f() {\n    use crate::*;\n    daemon::video::encoders();\n}\n".to_owned()),
        (
            "evidence.rs".to_owned(),
            "extern crate self as w;\nfn f() {\n    w::daemon::video::encoders();\n}\n".to_owned(),
        ),
        ("playback.rs".to_owned(), "#[path = \"daemon/serve.rs\"]\nmod serve_again;\n".to_owned()),
        ("views.rs".to_owned(), "include!(\"daemon/console.rs\");\n".to_owned()),
        (
            "pipeline.rs".to_owned(),
            "#[derive(serde::Serialize)]\nstruct S {\n    #[serde(serialize_with = \"crate::daemon::video::ser\")]\n    x: u8,\n}\n"
                .to_owned(),
        ),
    ];
    assert_eq!(
        violations(&files),
        [
            "evidence.rs: names the crate `w`: name its modules by their own paths",
            "evidence.rs:3: names crate::daemon, a layer above its own",
            "pipeline.rs:3: names crate::daemon, a layer above its own",
            "playback.rs:1: compiles a file by #[path], which may be another layer's",
            "retention.rs:1: glob-imports the crate root, bringing cmd and daemon into scope",
            "search.rs:2: glob-imports the crate root, bringing cmd and daemon into scope",
            "sync.rs:1: glob-imports the crate root, bringing cmd and daemon into scope",
            "views.rs:1: pastes a file in with include!, which may be another layer's",
        ]
    );
}

/// Red team h-red22b: a foundation still prints for a person unseen: through an alias of
/// `stdout` (`use std::io::stdout as out;`), a function value (`let o = std::io::stdout;`),
/// the raw file descriptor (`libc::write(1, …)`) or `/dev/stderr` opened as a file. Each is
/// named now.
#[test]
fn red22b_layers_printing_by_alias_fn_value_raw_fd_or_dev_stdout_is_named() {
    let files = vec![
        (
            "pipeline.rs".to_owned(),
            "use std::io::stdout as out;\nfn f() {\n    let _ = out().write_all(b\"sealed\\n\");\n}\n".to_owned(),
        ),
        (
            "playback.rs".to_owned(),
            "fn f() {\n    let o = std::io::stdout;\n    let _ = writeln!(o().lock(), \"done\");\n}\n".to_owned(),
        ),
        ("ocr.rs".to_owned(), "fn f() {\n    unsafe { libc::write(2, b\"x\\n\".as_ptr().cast(), 2) };\n}\n".to_owned()),
        (
            "daemon/broker.rs".to_owned(),
            "fn f() {\n    let _ = std::fs::OpenOptions::new().append(true).open(\"/dev/stderr\").map(|mut f| f.write_all(b\"x\"));\n}\n"
                .to_owned(),
        ),
    ];
    assert_eq!(printing(&files), ["daemon/broker.rs", "ocr.rs", "pipeline.rs", "playback.rs"]);
}
