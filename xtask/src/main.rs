//! Developer tasks, run as `cargo xtask <task>`: `setup` installs what the box and its tests need,
//! `up` runs the appliance on embedded defaults, `test` is exactly what CI runs, `bench` prints
//! the performance figures side by side with direct OpenSSH.

mod bench;
mod bench_rdp;
mod bench_video;
mod deps;
mod image;
mod setup;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::install(),
        Some("up") => up(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("image") => image::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|up|test|bench>\n  setup  install system packages the box and its tests need\n  up     build and run the appliance on embedded defaults (data in ./data)\n  test   format, lint and the whole test suite (what CI runs)\n  bench  throughput, keystroke latency and idle-session capacity vs direct OpenSSH\n  image  the appliance firmware image and its signed update bundle (rootfs/build.sh; --out DIR, --binary PATH)"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_owned()
}

/// Runs a command from the workspace root, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: running {shown}");
    let st = cmd.current_dir(root()).status().with_context(|| format!("starting {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds the box in release mode; returns the binary (under `CARGO_TARGET_DIR` when set).
pub fn release_witness() -> Result<PathBuf> {
    profile_witness("release")
}

/// Builds the box with the `firmware` profile (release, fat LTO, one codegen unit, stripped):
/// what the image ships.
pub fn firmware_witness() -> Result<PathBuf> {
    profile_witness("firmware")
}

fn profile_witness(profile: &str) -> Result<PathBuf> {
    // The image ships the root firewall loader beside the daemon.
    run(cargo().args(["build", "--profile", profile, "-p", "witness", "-p", "witness-egress"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    Ok(target.join(profile).join("witness"))
}

fn up(args: &[String]) -> Result<()> {
    setup::install_runtime()?;
    let bin = release_witness()?;
    let data = args.first().map(PathBuf::from).unwrap_or_else(|| root().join("data"));
    if !data.join("witness.toml").exists() {
        run(Command::new(&bin).arg("init").arg("--data").arg(&data))?;
    } else {
        println!(
            "using the existing data directory {} (its admin password was shown when it was created)",
            data.display()
        );
    }
    let d = data.display();
    println!(
        "\nWitness is starting on embedded defaults: SQLite index and recordings in {d}, SSH jump path on port 2222.\n\
         Next, in another terminal:\n\
         \x20 add a user:    echo 'their-password' | target/release/witness --data {d} user add alice --password-stdin --ssh-key ~/.ssh/id_ed25519.pub\n\
         \x20 add a target:  target/release/witness --data {d} target add web01 --ssh 10.0.0.5:22 --login root --identity /path/to/key\n\
         \x20 grant access:  target/release/witness --data {d} grant alice web01 --for 8h\n\
         \x20 connect:       ssh -p 2222 alice@web01@<this-box>\n\
         \x20 see sessions:  target/release/witness --data {d} sessions\n\
         \x20 web console:   https://<this-box>:8443/ (log in as admin; the certificate is self-signed, its fingerprint is above)\n\
         Stop with Ctrl-C: open sessions are ended and every recording is closed first.\n"
    );
    let err = exec(Command::new(&bin).arg("--data").arg(&data).arg("serve"));
    Err(err).context("running witness serve")
}

#[cfg(unix)]
fn exec(cmd: &mut Command) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    cmd.exec()
}

/// Runs each fuzz target for a while (nightly toolchain, cargo-fuzz): the longer run beside CI's
/// 5 s smoke run, `cargo xtask fuzz [SECONDS]` (60 by default).
fn fuzz(args: &[String]) -> Result<()> {
    let secs: u64 = args.first().map(|s| s.parse()).transpose().context("seconds must be a number")?.unwrap_or(60);
    fuzz_run(secs, FuzzBuild::Thorough)
}

/// The fuzz targets a cargo-fuzz manifest lists: the names of its `[[bin]]` sections.
fn fuzz_targets(manifest: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            targets.push(value.trim().trim_matches('"').to_owned());
        }
    }
    targets
}

/// How the fuzz targets are built: the smoke run in `test` only proves every target builds and
/// runs, so it takes the unoptimised build without a sanitizer (about 40 % of the CPU of the
/// optimised, address-sanitized build `cargo xtask fuzz` uses to search).
#[derive(Clone, Copy, PartialEq)]
enum FuzzBuild {
    Smoke,
    Thorough,
}

/// Every fuzz target of `fuzz/Cargo.toml` for `secs` seconds each: CI's smoke run, or the longer
/// run of `cargo xtask fuzz SECONDS`.
fn fuzz_run(secs: u64, build: FuzzBuild) -> Result<()> {
    let has_nightly = || {
        Command::new("rustup")
            .args(["run", "nightly", "rustc", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !has_nightly() {
        // cargo-fuzz needs a nightly compiler; a machine that cannot get one skips the smoke
        // run and says so (the rest of the suite does not depend on it).
        let _ = run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]));
        if !has_nightly() {
            eprintln!("xtask: fuzz smoke run SKIPPED: no nightly toolchain (rustup toolchain install nightly)");
            return Ok(());
        }
    }
    if !Command::new("cargo").args(["fuzz", "--version"]).output().map(|o| o.status.success()).unwrap_or(false) {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).context("reading fuzz/Cargo.toml")?;
    let targets = fuzz_targets(&manifest);
    if targets.is_empty() {
        bail!("fuzz/Cargo.toml lists no fuzz targets");
    }
    let flags: &[&str] = if build == FuzzBuild::Smoke { &["--dev", "--sanitizer", "none"] } else { &[] };
    // One build for all targets, then each runs from its own corpus folder.
    run(Command::new("cargo").args(["+nightly", "fuzz", "build"]).args(flags))?;
    // Each run is one single-threaded process: as many at once as the machine has cores, so the
    // smoke run costs the time of its targets divided by the cores (CI has a time limit).
    let at_once = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut failed = Vec::new();
    for batch in targets.chunks(at_once) {
        let mut running = Vec::new();
        for target in batch {
            let mut cmd = Command::new("cargo");
            cmd.args(["+nightly", "fuzz", "run"]).args(flags).args([
                target.as_str(),
                "--",
                &format!("-max_total_time={secs}"),
                "-rss_limit_mb=2048",
            ]);
            eprintln!("xtask: running {cmd:?}");
            let child = cmd.current_dir(root()).spawn().with_context(|| format!("starting fuzz target {target}"))?;
            running.push((target, child));
        }
        for (target, mut child) in running {
            let st = child.wait().with_context(|| format!("waiting for fuzz target {target}"))?;
            if !st.success() {
                failed.push(format!("{target} ({st})"));
            }
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

fn test() -> Result<()> {
    // Each phase says how long it took: CI has a time limit, and the log shows where it went.
    let phase = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let start = std::time::Instant::now();
        let done = f();
        eprintln!("xtask test: {name} took {} s", start.elapsed().as_secs());
        done
    };
    phase("setup", &mut setup::install)?;
    phase("fmt", &mut || run(cargo().args(["fmt", "--all", "--check"])))?;
    phase("dependency rules", &mut deps::check)?;
    phase("clippy", &mut || run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])))?;
    phase("fuzz smoke run", &mut || fuzz_run(5, FuzzBuild::Smoke))?;
    // Every target at once, test binaries included: the tests' dev-dependencies change some
    // dependencies' features (tokio's `test-util`), so a build of the binaries alone was done
    // twice over, once here and again by nextest (200 s of CI).
    phase("build", &mut || run(cargo().args(["build", "--workspace", "--all-targets"])))?;
    // nextest runs each test in its own process and ends with one summary line for the run.
    phase("tests", &mut || run(cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"])))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fuzz_targets_come_from_the_fuzz_manifest() {
        let manifest = std::fs::read_to_string(super::root().join("fuzz/Cargo.toml")).unwrap();
        let targets = super::fuzz_targets(&manifest);
        for t in ["sftp_observer", "cast_scan", "rdp_decoder", "rdp_filter", "rdp_trim", "rdp_channel_name"] {
            assert!(targets.iter().any(|n| n == t), "{t} missing from {targets:?}");
        }
        assert!(!targets.iter().any(|n| n == "witness-fuzz"), "the package name is no target: {targets:?}");
    }
}
