//! `cargo xtask image [--out DIR] [--binary PATH] [--cache DIR] [--boot-tries N] [--keyring PEM]
//! [--version V]`:
//! builds the appliance's firmware image and the signed update bundle of the same root with
//! `rootfs/build.sh` (as root). Without `--binary` it builds `witness` with the `firmware` profile
//! (release with fat LTO, stripped; Cargo.toml). Without `--version` build.sh gives the root the
//! binary's version plus the build time (every build its own, rising: the box refuses an update
//! of its own version or older).

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

pub fn run(args: &[String]) -> Result<()> {
    let mut out = crate::root().join("target/image");
    let mut binary: Option<PathBuf> = None;
    let mut passthrough: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = PathBuf::from(value()?),
            "--binary" => binary = Some(PathBuf::from(value()?)),
            "--cache" | "--slot-mb" | "--data-mb" | "--boot-tries" | "--keyring" | "--signing-dir" | "--version" => {
                let v = value()?;
                passthrough.extend([a.clone(), v]);
            }
            other => {
                bail!(
                    "unknown argument {other}; usage: cargo xtask image [--out DIR] [--binary PATH] [--cache DIR] [--boot-tries N] [--keyring PEM] [--signing-dir DIR] [--version V]"
                )
            }
        }
    }
    crate::setup::install_image()?;
    let binary = match binary {
        Some(b) => b,
        None => crate::firmware_witness()?,
    };
    let mut cmd = crate::setup::as_root(&["bash"]);
    cmd.arg(crate::root().join("rootfs/build.sh"))
        .arg("--binary")
        .arg(&binary)
        .arg("--out")
        .arg(&out)
        .args(&passthrough);
    crate::run(&mut cmd)
}
