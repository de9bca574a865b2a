//! The dependency rules ARCHITECTURE.md states, checked from `cargo metadata` on every
//! `cargo xtask test`: one crate owns each foreign system, the sans-IO crates reach no I/O
//! library even indirectly, and firmware and board crates meet only in the binary. A broken rule
//! fails the run naming the edge.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Foreign-system crates and the one workspace crate that may depend on each directly
/// (`prefix*` matches a crate family). Tooling (`xtask`, `tests`) and dev-dependencies are free.
/// A foreign system is matched by every client library of it this checker knows, not only the
/// one the owner uses, so a second client of the same system is named too.
const OWNERS: &[(&str, &[&str])] = &[
    ("russh", &["witness-ssh"]),
    ("thrussh*", &["witness-ssh"]),
    ("ssh2", &["witness-ssh"]),
    ("libssh2-sys", &["witness-ssh"]),
    ("ironrdp-*", &["witness-rdp", "witness-rdp-core"]),
    ("sspi", &["witness-rdp"]),
    ("rusqlite", &["witness-index"]),
    ("libsqlite3-sys", &["witness-index"]),
    ("sqlx*", &["witness-index"]),
    ("diesel*", &["witness-index"]),
    ("minio", &["witness-store"]),
    ("reqwest", &["witness-store"]),
    ("ureq", &["witness-store"]),
    ("isahc", &["witness-store"]),
    ("aws-sdk-*", &["witness-store"]),
    ("rusoto*", &["witness-store"]),
    ("azure_storage*", &["witness-store"]),
    ("object_store", &["witness-store"]),
    ("gstreamer*", &["witness-video"]),
    ("axum", &["witness-web"]),
    ("hyper", &["witness-web"]),
    ("embedded-hal", &["witness-board", "witness-board-linux"]),
    ("linux-embedded-hal", &["witness-board-linux"]),
    ("gpiocdev*", &["witness-board-linux"]),
    ("witness-tpm", &["witness-keys"]),
];

/// The async runtime and sockets.
const RUNTIME: &[&str] = &["tokio", "mio", "socket2"];
/// The session machinery: index, SSH, RDP and its NTLM, video, store and web clients.
const MACHINERY: &[&str] =
    &["rusqlite", "libsqlite3-sys", "russh", "ironrdp-*", "sspi", "gstreamer*", "minio", "reqwest", "hyper", "axum"];
/// TLS stacks.
const TLS: &[&str] = &["openssl*", "rustls*", "tokio-rustls"];

/// Crates that may not reach these, through any chain of normal dependencies (the sans-IO tier,
/// the bottom of the key hierarchy, and the one binary that runs as root).
const SANS_IO: &[(&str, &[&[&str]])] = &[
    ("witness-core", &[RUNTIME, MACHINERY]),
    // The gate hands out tokio-util's CancellationToken (a sync primitive), so tokio is reached.
    ("witness-gate", &[MACHINERY]),
    // The RDP core tier: IronRDP's sans-IO crates only, like IronRDP's own core tier.
    (
        "witness-rdp-core",
        &[
            RUNTIME,
            TLS,
            &[
                "rusqlite",
                "libsqlite3-sys",
                "russh",
                "ironrdp-tokio",
                "ironrdp-async",
                "ironrdp-blocking",
                "sspi",
                "gstreamer*",
                "minio",
                "reqwest",
                "hyper",
                "axum",
            ],
        ],
    ),
    // The key hierarchy sits at the bottom: the binary and the archive build on it, and it reaches
    // no store, index, session machinery or async runtime.
    ("witness-keys", &[RUNTIME, MACHINERY, &["witness-index", "witness-store", "witness-recorder"]]),
    // The firewall loader runs as root: none of the session machinery, no async runtime.
    ("witness-egress", &[&["tokio"], MACHINERY, &["openssl*"]]),
];

/// Workspace crates whose direct normal dependencies are exactly named: the archive crate
/// decides (pure functions) and reaches the store, index and recordings only through their
/// owning crates, never a client library of its own.
const ALLOWED: &[(&str, &[&str])] = &[(
    "witness-archive",
    &[
        // Hashing the stored bytes while a recording is walked for playback.
        "hex",
        "serde",
        "serde_json",
        "sha2",
        "thiserror",
        "tracing",
        "tokio",
        "tokio-util",
        "witness-core",
        "witness-index",
        "witness-recorder",
        "witness-store",
    ],
)];

/// Workspace crates that are tooling, not the product.
const TOOLING: &[&str] = &["xtask", "tests", "witness-fuzz"];

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A workspace crate's folder group: `firmware`, `board` or something else.
fn group(manifest_path: &str) -> &'static str {
    if manifest_path.contains("/firmware/") {
        "firmware"
    } else if manifest_path.contains("/board/") {
        "board"
    } else {
        "other"
    }
}

/// Every broken rule in `metadata` (the JSON of `cargo metadata --format-version 1`), one line
/// each naming the edge.
pub fn violations(metadata: &Value) -> Result<Vec<String>> {
    let packages = metadata["packages"].as_array().context("metadata has no packages")?;
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("no workspace members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let by_id: BTreeMap<&str, &Value> = packages.iter().filter_map(|p| Some((p["id"].as_str()?, p))).collect();
    let name_of = |id: &str| by_id.get(id).and_then(|p| p["name"].as_str()).unwrap_or(id).to_owned();
    let mut out = Vec::new();
    // Direct edges of workspace crates (normal and build; dev-dependencies are for tests).
    let mut group_of = BTreeMap::new();
    for id in &members {
        let p = by_id.get(id).context("a member without a package")?;
        group_of.insert(
            p["name"].as_str().unwrap_or_default().to_owned(),
            group(p["manifest_path"].as_str().unwrap_or("")),
        );
    }
    for id in &members {
        let p = by_id[id];
        let me = p["name"].as_str().unwrap_or_default();
        if TOOLING.contains(&me) {
            continue;
        }
        for d in p["dependencies"].as_array().into_iter().flatten() {
            if d["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep = d["name"].as_str().unwrap_or_default();
            if TOOLING.contains(&dep) {
                out.push(format!("{me} -> {dep}: product crates do not depend on tooling"));
            }
            for (krate, allowed) in ALLOWED {
                if me == *krate && !allowed.contains(&dep) {
                    out.push(format!("{me} -> {dep}: {krate} may depend only on {}", allowed.join(", ")));
                }
            }
            for (pattern, owners) in OWNERS {
                if matches(pattern, dep) && !owners.contains(&me) {
                    out.push(format!("{me} -> {dep}: only {} may use {pattern}", owners.join(", ")));
                }
            }
            match (group_of.get(me).copied(), group_of.get(dep).copied()) {
                (Some("board"), Some("firmware")) => {
                    out.push(format!("{me} -> {dep}: board crates do not depend on firmware crates"))
                }
                (Some("firmware"), Some("board")) if me != "witness" => {
                    out.push(format!("{me} -> {dep}: firmware and board crates meet only in the binary (witness)"))
                }
                _ => {}
            }
        }
    }
    // Transitive normal dependencies, from the resolved graph.
    let nodes = metadata["resolve"]["nodes"].as_array().context("metadata has no resolve graph")?;
    let normal: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .filter_map(|n| {
            let deps = n["deps"]
                .as_array()?
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        // Any target: `check` asks for the host platform's graph only, where a
                        // `[target.'cfg(..)'.dependencies]` edge is linked like any other.
                        .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()))
                })
                .filter_map(|d| d["pkg"].as_str())
                .collect();
            Some((n["id"].as_str()?, deps))
        })
        .collect();
    // Normal and build edges: what a build script runs makes the product too.
    let built: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .filter_map(|n| {
            let deps = n["deps"]
                .as_array()?
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k["kind"].is_null() || k["kind"].as_str() == Some("build")))
                })
                .filter_map(|d| d["pkg"].as_str())
                .collect();
            Some((n["id"].as_str()?, deps))
        })
        .collect();
    // One owner, transitively: from each product crate, walk the normal and build dependencies that are
    // not workspace crates (each of those is checked itself) nor a foreign system the crate owns
    // (what reqwest pulls in is the store's business). A foreign system reached on the way
    // through a wrapper is named with the chain.
    let owns = |me: &str, name: &str| OWNERS.iter().any(|(p, o)| matches(p, name) && o.contains(&me));
    for id in &members {
        let me = name_of(id);
        if TOOLING.contains(&me.as_str()) {
            continue;
        }
        let mut via: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = vec![*id];
        let mut seen = BTreeSet::from([*id]);
        while let Some(at) = queue.pop() {
            for dep in built.get(at).into_iter().flatten() {
                if members.contains(dep) || !seen.insert(dep) {
                    continue;
                }
                via.insert(dep, at);
                let name = name_of(dep);
                if owns(&me, &name) {
                    continue;
                }
                if let Some((pattern, owners)) = OWNERS.iter().find(|(p, _)| matches(p, &name)) {
                    // A direct edge is already named above.
                    if at != *id {
                        let mut chain = vec![name.clone()];
                        let mut back = *dep;
                        while let Some(prev) = via.get(back) {
                            chain.push(name_of(prev));
                            back = prev;
                        }
                        chain.reverse();
                        out.push(format!("{}: only {} may use {pattern}", chain.join(" -> "), owners.join(", ")));
                    }
                    continue;
                }
                queue.push(dep);
            }
        }
    }
    for (krate, forbidden) in SANS_IO {
        let Some(root) = members.iter().find(|id| name_of(id) == *krate) else { continue };
        // Breadth first, keeping the path to name the chain.
        let mut via: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = vec![*root];
        let mut seen = BTreeSet::from([*root]);
        while let Some(id) = queue.pop() {
            for dep in normal.get(id).into_iter().flatten() {
                if seen.insert(dep) {
                    via.insert(dep, id);
                    queue.push(dep);
                }
            }
        }
        for id in seen.iter().filter(|id| *id != root) {
            let name = name_of(id);
            if forbidden.iter().flat_map(|g| g.iter()).any(|f| matches(f, &name)) {
                let mut chain = vec![name];
                let mut at = *id;
                while let Some(prev) = via.get(at) {
                    chain.push(name_of(prev));
                    at = prev;
                }
                chain.reverse();
                out.push(format!("{}: {krate} is sans-IO and may not reach it", chain.join(" -> ")));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The triple the box's binaries are built for here (`rustc -vV`'s host).
fn host_triple() -> Result<String> {
    let out = std::process::Command::new("rustc").arg("-vV").output().context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")
}

/// Runs the check on this workspace.
pub fn check() -> Result<()> {
    let out = crate::cargo()
        .args(["metadata", "--format-version", "1", "--locked", "--filter-platform", &host_triple()?])
        .output()?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let metadata: Value = serde_json::from_slice(&out.stdout)?;
    let found = violations(&metadata)?;
    if !found.is_empty() {
        bail!("dependency rules broken (ARCHITECTURE.md):\n  {}", found.join("\n  "));
    }
    println!("dependency rules hold (one owner per foreign system, sans-IO tiers, firmware/board apart)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        serde_json::from_str(include_str!("../fixtures/metadata-forbidden.json")).unwrap()
    }

    #[test]
    fn forbidden_edges_are_named() {
        let found = violations(&fixture()).unwrap();
        assert_eq!(
            found,
            vec![
                "witness-core -> helper -> tokio: witness-core is sans-IO and may not reach it".to_owned(),
                "witness-index -> russh: only witness-ssh may use russh".to_owned(),
                "witness-ssh -> witness-board: firmware and board crates meet only in the binary (witness)".to_owned(),
            ]
        );
    }

    #[test]
    fn the_archive_crate_depends_only_on_what_it_is_allowed() {
        let metadata = serde_json::json!({
            "workspace_members": ["a"],
            "packages": [{
                "id": "a", "name": "witness-archive", "manifest_path": "/w/firmware/witness-archive/Cargo.toml",
                "dependencies": [
                    {"name": "witness-store", "kind": null},
                    {"name": "ureq", "kind": null},
                    {"name": "tempfile", "kind": "dev"},
                ],
            }],
            "resolve": {"nodes": []},
        });
        assert_eq!(
            violations(&metadata).unwrap(),
            vec![
                "witness-archive -> ureq: only witness-store may use ureq".to_owned(),
                format!("witness-archive -> ureq: witness-archive may depend only on {}", ALLOWED[0].1.join(", "))
            ]
        );
    }

    #[test]
    fn the_workspace_keeps_its_rules() {
        let out = crate::cargo()
            .args(["metadata", "--format-version", "1", "--filter-platform", &host_triple().unwrap()])
            .output()
            .unwrap();
        let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(violations(&metadata).unwrap(), Vec::<String>::new());
    }

    /// Red team (issue 22): a normal dependency declared under `[target.'cfg(…)'.dependencies]`
    /// is linked like any other on that target, but the transitive walk keeps only edges whose
    /// `target` is null, so a sans-IO crate (or the root firewall loader) reaches tokio unseen.
    /// Flipped: it passed while the hole was open.
    #[test]
    fn red22_deps_a_target_specific_edge_is_checked_like_any_other() {
        let metadata = serde_json::json!({
            "workspace_members": ["core", "egress"],
            "packages": [
                {"id": "core", "name": "witness-core", "manifest_path": "/w/firmware/witness-core/Cargo.toml",
                 "dependencies": [{"name": "tokio", "kind": null, "target": "cfg(unix)"}]},
                {"id": "egress", "name": "witness-egress", "manifest_path": "/w/firmware/witness-egress/Cargo.toml",
                 "dependencies": [{"name": "helper", "kind": null}]},
                {"id": "helper", "name": "helper", "manifest_path": "/r/helper/Cargo.toml",
                 "dependencies": [{"name": "rusqlite", "kind": null, "target": "cfg(target_os = \"linux\")"}]},
                {"id": "tokio", "name": "tokio", "manifest_path": "/r/tokio/Cargo.toml", "dependencies": []},
                {"id": "rusqlite", "name": "rusqlite", "manifest_path": "/r/rusqlite/Cargo.toml", "dependencies": []},
            ],
            "resolve": {"nodes": [
                {"id": "core", "deps": [{"pkg": "tokio", "dep_kinds": [{"kind": null, "target": "cfg(unix)"}]}]},
                {"id": "egress", "deps": [{"pkg": "helper", "dep_kinds": [{"kind": null, "target": null}]}]},
                {"id": "helper", "deps": [{"pkg": "rusqlite", "dep_kinds": [{"kind": null, "target": "cfg(target_os = \"linux\")"}]}]},
                {"id": "tokio", "deps": []},
                {"id": "rusqlite", "deps": []},
            ]},
        });
        // witness-core -> tokio and witness-egress -> helper -> rusqlite are both linked on the
        // box (Linux, unix): both are named.
        assert_eq!(
            violations(&metadata).unwrap(),
            vec![
                "witness-core -> tokio: witness-core is sans-IO and may not reach it".to_owned(),
                "witness-egress -> helper -> rusqlite: only witness-index may use rusqlite".to_owned(),
                "witness-egress -> helper -> rusqlite: witness-egress is sans-IO and may not reach it".to_owned(),
            ]
        );
    }

    /// Red team (issue 22): "one owner per foreign system" is checked on direct edges only, and
    /// only for the client libraries named in OWNERS: a crate that reaches russh through a
    /// wrapper crate, or talks to the store with another HTTP/S3 client, passes. Passes while the
    /// hole is open.
    #[test]
    fn red22_deps_a_foreign_system_reached_through_a_wrapper_or_another_client_is_named() {
        let metadata = serde_json::json!({
            "workspace_members": ["index", "recorder"],
            "packages": [
                {"id": "index", "name": "witness-index", "manifest_path": "/w/firmware/witness-index/Cargo.toml",
                 "dependencies": [{"name": "async-ssh2-tokio", "kind": null}]},
                {"id": "recorder", "name": "witness-recorder", "manifest_path": "/w/firmware/witness-recorder/Cargo.toml",
                 "dependencies": [{"name": "ureq", "kind": null}, {"name": "aws-sdk-s3", "kind": null}, {"name": "libsqlite3-sys", "kind": null}]},
                {"id": "wrap", "name": "async-ssh2-tokio", "manifest_path": "/r/w/Cargo.toml",
                 "dependencies": [{"name": "russh", "kind": null}]},
                {"id": "russh", "name": "russh", "manifest_path": "/r/russh/Cargo.toml", "dependencies": []},
                {"id": "ureq", "name": "ureq", "manifest_path": "/r/ureq/Cargo.toml", "dependencies": []},
                {"id": "s3", "name": "aws-sdk-s3", "manifest_path": "/r/s3/Cargo.toml", "dependencies": []},
                {"id": "sqlite", "name": "libsqlite3-sys", "manifest_path": "/r/sqlite/Cargo.toml", "dependencies": []},
            ],
            "resolve": {"nodes": [
                {"id": "index", "deps": [{"pkg": "wrap", "dep_kinds": [{"kind": null, "target": null}]}]},
                {"id": "wrap", "deps": [{"pkg": "russh", "dep_kinds": [{"kind": null, "target": null}]}]},
                {"id": "recorder", "deps": [
                    {"pkg": "ureq", "dep_kinds": [{"kind": null, "target": null}]},
                    {"pkg": "s3", "dep_kinds": [{"kind": null, "target": null}]},
                    {"pkg": "sqlite", "dep_kinds": [{"kind": null, "target": null}]},
                ]},
            ]},
        });
        // witness-index would speak SSH and witness-recorder have its own store client and SQLite.
        assert_eq!(
            violations(&metadata).unwrap(),
            vec![
                "witness-index -> async-ssh2-tokio -> russh: only witness-ssh may use russh".to_owned(),
                "witness-recorder -> aws-sdk-s3: only witness-store may use aws-sdk-*".to_owned(),
                "witness-recorder -> libsqlite3-sys: only witness-index may use libsqlite3-sys".to_owned(),
                "witness-recorder -> ureq: only witness-store may use ureq".to_owned(),
            ]
        );
    }

    /// Red team h-red22b: the one-owner walk skips every workspace member ("each of those is
    /// checked itself"), but the tooling members (`tests`, which has a library, `xtask`,
    /// `witness-fuzz`) are never checked themselves. A product crate that takes a normal
    /// dependency on `tests` reaches through it whatever `tests` depends on: here the web
    /// console reaches SQLite and SSH, and nothing is named. A build-dependency's own chain is
    /// not walked either (only `kind: null` edges are): a build script's helper that pulls
    /// russh (code generated from it at build time) is unseen. Both are named now.
    #[test]
    fn red22b_deps_a_foreign_system_reached_through_a_tooling_member_or_a_build_helper_is_named() {
        let metadata = serde_json::json!({
            "workspace_members": ["web", "tests", "store"],
            "packages": [
                {"id": "web", "name": "witness-web", "manifest_path": "/w/firmware/witness-web/Cargo.toml",
                 "dependencies": [{"name": "tests", "kind": null}]},
                {"id": "tests", "name": "tests", "manifest_path": "/w/tests/Cargo.toml",
                 "dependencies": [{"name": "rusqlite", "kind": null}, {"name": "russh", "kind": null}]},
                {"id": "store", "name": "witness-store", "manifest_path": "/w/firmware/witness-store/Cargo.toml",
                 "dependencies": [{"name": "codegen", "kind": "build"}]},
                {"id": "rusqlite", "name": "rusqlite", "manifest_path": "/r/rusqlite/Cargo.toml", "dependencies": []},
                {"id": "russh", "name": "russh", "manifest_path": "/r/russh/Cargo.toml", "dependencies": []},
                {"id": "codegen", "name": "codegen", "manifest_path": "/r/codegen/Cargo.toml",
                 "dependencies": [{"name": "russh", "kind": null}]},
            ],
            "resolve": {"nodes": [
                {"id": "web", "deps": [{"pkg": "tests", "dep_kinds": [{"kind": null, "target": null}]}]},
                {"id": "tests", "deps": [
                    {"pkg": "rusqlite", "dep_kinds": [{"kind": null, "target": null}]},
                    {"pkg": "russh", "dep_kinds": [{"kind": null, "target": null}]},
                ]},
                {"id": "store", "deps": [{"pkg": "codegen", "dep_kinds": [{"kind": "build", "target": null}]}]},
                {"id": "codegen", "deps": [{"pkg": "russh", "dep_kinds": [{"kind": null, "target": null}]}]},
                {"id": "rusqlite", "deps": []},
                {"id": "russh", "deps": []},
            ]},
        });
        assert_eq!(
            violations(&metadata).unwrap(),
            vec![
                "witness-store -> codegen -> russh: only witness-ssh may use russh".to_owned(),
                "witness-web -> tests: product crates do not depend on tooling".to_owned(),
            ]
        );
    }
}
