//! Red team (issue 22): attacks on the root firewall loader through the file the unprivileged
//! daemon publishes.

use std::process::Command;

/// The loader starts one thread per name with `std::thread::spawn`, which panics when the
/// system will not give it a thread: a published file of 4096 names (the most `parse` takes)
/// crashes the root loader wherever threads or address space are limited (a unit's
/// `TasksMax`/`LimitAS`, a small box), and the sets are never reloaded. Here the address space is
/// limited with `ulimit -v`. Passes while the hole is open (a fix resolves with a bounded pool and
/// degrades to "not resolved" notes).
#[test]
fn red22_egress_many_names_crash_the_root_loader() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    // Compact JSON: 4096 entries fit in the 256 KiB the loader reads.
    let allow: Vec<String> = (0..witness_core::egress::MAX_ENTRIES)
        .map(|i| format!(r#"{{"host":"n{i}.invalid","port":22,"why":"t"}}"#))
        .collect();
    let text = format!(r#"{{"version":1,"allow":[{}]}}"#, allow.join(","));
    assert!(witness_core::egress::parse(&text).is_ok());
    std::fs::write(dir.path().join(witness_core::egress::EGRESS_FILE), text).unwrap();
    let bin = env!("CARGO_BIN_EXE_witness-egress");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v 600000; exec {bin} --data {} render", dir.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the loader survived: {stderr}");
    assert!(stderr.contains("panicked") && stderr.contains("failed to spawn thread"), "{stderr}");
}
