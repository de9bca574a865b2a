//! Pulls the terminal player from npm at build time so the binary embeds it (no CDN at run time).
//!
//! The tarball is pinned by version and by the registry's sha512 integrity string; a tarball that
//! does not match fails the build. `WITNESS_WEB_VENDOR=DIR` (holding the tarball) builds offline.

use base64::Engine;
use sha2::{Digest, Sha512};
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "asciinema-player";
const VERSION: &str = "3.10.0";
const INTEGRITY: &str =
    "sha512-shoOK6F606nDKZxDVM7JuGSCAyWLePoGRFNlV+FqiP5Sqvyn0BlE7wlbjZyd2X4P1iRhv/HKfVNtnQIxmgphRA==";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WITNESS_WEB_VENDOR");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let tarball_name = format!("{PACKAGE}-{VERSION}.tgz");
    let tarball = match std::env::var_os("WITNESS_WEB_VENDOR") {
        Some(dir) => PathBuf::from(dir).join(&tarball_name),
        None => {
            let cached = out.join(&tarball_name);
            if !verified(&cached) {
                let status = Command::new("npm")
                    .args(["pack", &format!("{PACKAGE}@{VERSION}"), "--silent", "--pack-destination"])
                    .arg(&out)
                    .status();
                match status {
                    Ok(s) if s.success() => {}
                    other => panic!(
                        "the web console embeds {PACKAGE} {VERSION} from npm and `npm pack` failed ({other:?}); \
                         install npm (cargo xtask setup does) or set WITNESS_WEB_VENDOR to a folder holding {tarball_name}"
                    ),
                }
            }
            cached
        }
    };
    assert!(verified(&tarball), "{} does not match the pinned integrity {INTEGRITY}", tarball.display());
    let unpack = out.join("npm");
    let _ = std::fs::remove_dir_all(&unpack);
    std::fs::create_dir_all(&unpack).expect("creating the unpack folder");
    let status = Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(&unpack).status();
    assert!(matches!(status, Ok(s) if s.success()), "unpacking {} failed", tarball.display());
    for file in ["asciinema-player.min.js", "asciinema-player.css"] {
        std::fs::copy(unpack.join("package/dist/bundle").join(file), out.join(file))
            .unwrap_or_else(|e| panic!("{file} is missing from {tarball_name}: {e}"));
    }
}

fn verified(tarball: &Path) -> bool {
    let Ok(bytes) = std::fs::read(tarball) else { return false };
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes));
    format!("sha512-{digest}") == INTEGRITY
}
