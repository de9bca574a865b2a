//! Installs the system packages the box and its tests need, from Debian's archive. Idempotent:
//! installed packages are skipped, so it costs nothing on a prepared machine.

use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

/// Debian packages: OpenSSH (the target and the clients of the tests), asciinema (replays casts),
/// tmux and script (drive interactive sessions), build tools for bundled SQLite, curl for
/// Azurite (Microsoft's Azure Storage emulator) in the store tests, losetup, mkfs.ext4, lvm2,
/// mdadm and btrfs-progs for the flash.sh tests (a loop device made an LVM PV, an md member read
/// by mdadm, the second device of a mounted btrfs). Node.js comes from Debian only if the machine has none (some images ship
/// their own, which Debian's npm conflicts with). The RDP tests: FreeRDP 2.11 (`xfreerdp` as the
/// client, `freerdp-shadow-cli` + `winpr-hash` as an NLA target) under Xvfb, xrdp + xorgxrdp as a
/// TLS-only target (an X session started through `/etc/X11/Xsession`), `xwd`/`xsetroot` to read
/// and change screens, `openssl` for xrdp's certificate. The web console: Debian's `chromium`
/// (driven by playwright-core from npm, no browser download) and `oathtool` (TOTP codes from an
/// independent implementation). `python3-venv` for moto's S3 server (S3 Object Lock). `xterm` draws
/// the terminal workloads of the RDP video benchmark and takes typed keys on an xrdp desktop;
/// `xdotool` resizes the client's window and types at full speed; `xclip` reads and sets the
/// clipboard on both sides of an RDP session.
/// `swtpm` (a software TPM 2.0) and `tpm2-tools` for keys sealed to a TPM. `python3-paramiko`:
/// the scripted SSH client of the attack suites (for `/usr/bin/python3`).
const PACKAGES: &[&str] = &[
    "openssh-server",
    "openssh-client",
    "asciinema",
    "tmux",
    "bsdutils",
    "procps",
    "build-essential",
    "pkg-config",
    "curl",
    "util-linux",
    "e2fsprogs",
    "lvm2",
    "mdadm",
    "btrfs-progs",
    "xvfb",
    "freerdp2-x11",
    "freerdp2-shadow-x11",
    "winpr-utils",
    "xrdp",
    "xorgxrdp",
    "x11-common",
    "x11-apps",
    "x11-xserver-utils",
    "openssl",
    "chromium",
    "oathtool",
    "ffmpeg",
    "python3-venv",
    "xterm",
    "xdotool",
    "xclip",
    "swtpm",
    "swtpm-tools",
    "tpm2-tools",
    "python3-paramiko",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

pub fn as_root(args: &[&str]) -> Command {
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    let mut c = if is_root {
        Command::new(args[0])
    } else {
        let mut c = Command::new("sudo");
        c.arg(args[0]);
        c
    };
    c.args(&args[1..]).env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// What building and running the box needs (the appliance itself talks to OpenSSH servers over
/// the network and needs no peer installed locally).
const RUNTIME: &[&str] = &[
    "build-essential",
    "pkg-config",
    // RDP session video: GStreamer 1.22 to build against, and its encoders (x264 in ugly,
    // OpenH264 and the VA plugin in bad) and muxers (good).
    "libgstreamer1.0-dev",
    "libgstreamer-plugins-base1.0-dev",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-plugins-ugly",
    // On-screen text of RDP sessions (OCR after each session): Tesseract with English.
    "tesseract-ocr",
    "tesseract-ocr-eng",
];

pub fn install_runtime() -> Result<()> {
    apt(RUNTIME)?;
    // The console's terminal player is pulled from npm when the binary is built.
    ensure_npm()
}

fn ensure_npm() -> Result<()> {
    if Command::new("sh").arg("-c").arg("command -v npm").output().map(|o| !o.status.success()).unwrap_or(true) {
        crate::run(&mut as_root(&["apt-get", "update", "-q"]))?;
        crate::run(&mut as_root(&["apt-get", "install", "-y", "-q", "nodejs", "npm"]))?;
    }
    Ok(())
}

fn apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        eprintln!("xtask: installing {}", missing.join(" "));
        crate::run(&mut as_root(&["apt-get", "update", "-q"]))?;
        let mut args = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        crate::run(&mut as_root(&args))?;
    }
    Ok(())
}

/// The firmware image (`cargo xtask image`, `tests/e2e/image.rs`): mmdebstrap, squashfs and
/// dm-verity tools, sfdisk, RAUC and openssl for the signed update bundle, strip, xz for the
/// kernel modules; QEMU boots the image in the test. QEMU comes from bookworm-backports
/// because these machines may carry `qemu-utils` from there, which bookworm's QEMU conflicts with.
const IMAGE: &[&str] = &[
    "mmdebstrap",
    "squashfs-tools",
    "cryptsetup-bin",
    "fdisk",
    "e2fsprogs",
    "curl",
    "rauc",
    "openssl",
    "binutils",
    "xz-utils",
];

pub fn install_image() -> Result<()> {
    apt(IMAGE)?;
    if !installed("qemu-system-x86") {
        ensure_backports()?;
        crate::run(&mut as_root(&["apt-get", "update", "-q"]))?;
        crate::run(&mut as_root(&[
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
            "qemu-system-x86",
        ]))?;
    }
    Ok(())
}

/// Adds a bookworm-backports sources entry unless one is configured already.
pub fn ensure_backports() -> Result<()> {
    let configured = Command::new("sh")
        .arg("-c")
        .arg("grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !configured {
        let entry = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        crate::run(&mut as_root(&[
            "sh",
            "-c",
            &format!("printf '{entry}' > /etc/apt/sources.list.d/bookworm-backports.sources"),
        ]))?;
    }
    Ok(())
}

/// The kernel of the image `rootfs/build.sh` bootstraps — bookworm's own suite names it through
/// `linux-image-amd64` (the build reads no security or updates suite) — as its ABI name
/// (`6.1.0-50-amd64`) and Debian version (`6.1.176-1`).
fn image_kernel() -> Result<(String, String)> {
    let query = || -> Option<(String, String)> {
        let madison = Command::new("apt-cache").args(["madison", "linux-image-amd64"]).output().ok()?;
        let version = String::from_utf8_lossy(&madison.stdout).lines().find_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            (cols.len() >= 3 && cols[2].split_whitespace().nth(1) == Some("bookworm/main")).then(|| cols[1].to_owned())
        })?;
        let show = Command::new("apt-cache").args(["show", &format!("linux-image-amd64={version}")]).output().ok()?;
        let depends = String::from_utf8_lossy(&show.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Depends: ").map(str::to_owned))?;
        let image = depends.split(',').map(str::trim).find(|d| d.starts_with("linux-image-"))?;
        let kver = image.split_whitespace().next()?.strip_prefix("linux-image-")?.to_owned();
        Some((kver, version))
    };
    if let Some(k) = query() {
        return Ok(k);
    }
    crate::run(&mut as_root(&["apt-get", "update", "-q"]))?;
    query().ok_or_else(|| anyhow::anyhow!("apt-cache names no linux-image-amd64 in bookworm/main"))
}

/// The image tests' guest drivers (vicodec, gpio-sim; `tests/e2e/guest/build-modules.sh`, test
/// only) are built out of tree for the image's exact kernel: its headers (vermagic, symbol CRCs)
/// and the kernel source of the same version (a 139 MB package; the test unpacks five files).
pub fn install_guest_module_sources() -> Result<()> {
    let (kver, version) = image_kernel()?;
    let series = kver.split('.').take(2).collect::<Vec<_>>().join(".");
    let wanted = [format!("linux-headers-{kver}"), format!("linux-source-{series}")];
    let missing: Vec<String> = wanted
        .iter()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status} ${Version}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout) != format!("install ok installed {version}"))
                .unwrap_or(true)
        })
        .map(|p| format!("{p}={version}"))
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: installing {} (the image's kernel, for the image tests' guest drivers)", missing.join(" "));
        let mut args = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends", "--allow-downgrades"];
        args.extend(missing.iter().map(String::as_str));
        crate::run(&mut as_root(&args))?;
    }
    Ok(())
}

/// Where setup installs moto's S3 server when none is on the PATH (tests/e2e/retention.rs).
const MOTO: &str = "/opt/witness-moto/bin/moto_server";

/// Everything the tests and the bench need.
pub fn install() -> Result<()> {
    apt(RUNTIME)?;
    apt(PACKAGES)?;
    install_image()?;
    install_guest_module_sources()?;
    // sshd refuses to start without its privilege-separation directory.
    if !std::path::Path::new("/run/sshd").exists() {
        crate::run(&mut as_root(&["mkdir", "-p", "/run/sshd"]))?;
    }
    if !Command::new("cargo").args(["nextest", "--version"]).output().map(|o| o.status.success()).unwrap_or(false) {
        crate::run(Command::new("cargo").args(["install", "cargo-nextest", "--locked"]))?;
    }
    // A real S3-compatible server for the store tests (MinIO is not packaged here); this
    // release is the newest that builds with the workspace's Rust.
    let home = std::env::var("HOME").unwrap_or_default();
    if !std::path::Path::new(&format!("{home}/.cargo/bin/s3s-fs")).exists() {
        crate::run(Command::new("cargo").args(["install", "s3s-fs@0.14.1", "--features", "binary", "--locked"]))?;
    }
    // moto's S3 server (PyPI) implements S3 Object Lock, which s3s-fs does not; the retention
    // tests lock objects against it. In a venv of its own: Debian's Python refuses a system pip.
    if !Path::new(MOTO).exists()
        && Command::new("sh")
            .arg("-c")
            .arg("command -v moto_server")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
    {
        crate::run(&mut as_root(&["/usr/bin/python3", "-m", "venv", "/opt/witness-moto"]))?;
        crate::run(&mut as_root(&["/opt/witness-moto/bin/pip", "install", "-q", "moto[server]==5.2.1"]))?;
    }
    ensure_npm()?;
    // The browser tests' driver, pinned by tests/web/package-lock.json.
    let web = crate::root().join("tests/web");
    if !web.join("node_modules/playwright-core").exists() {
        // `run` works from the workspace root: name the folder.
        crate::run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix"]).arg(&web))?;
    }
    if Command::new("sh").arg("-c").arg("command -v azurite-blob").output().map(|o| !o.status.success()).unwrap_or(true)
    {
        crate::run(&mut as_root(&["npm", "install", "-g", "azurite@3.35.0"]))?;
    }
    for tool in [
        "ssh",
        "/usr/sbin/sshd",
        "asciinema",
        "tmux",
        "script",
        "curl",
        "azurite-blob",
        "Xvfb",
        "xfreerdp",
        "freerdp-shadow-cli",
        "xrdp",
        "xwd",
        "xdotool",
        "xclip",
        "chromium",
        "oathtool",
        "ffprobe",
        "mmdebstrap",
        "qemu-system-x86_64",
    ] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            bail!("{tool} is still missing after installing packages");
        }
    }
    Ok(())
}
