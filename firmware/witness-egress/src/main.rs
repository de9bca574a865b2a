//! `witness-egress --data DIR load|render`: the firewall loader `witness-egress.service` runs as
//! root. `load` replaces the egress sets with what the published file allows; `render` prints the
//! nft script without loading it.

use anyhow::{Result, bail};
use std::path::PathBuf;

const USAGE: &str = "usage: witness-egress [--data DIR] load|render";

fn main() {
    if let Err(e) = run() {
        eprintln!("witness-egress: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut data = PathBuf::from("/var/lib/witness");
    let mut command = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => match args.next() {
                Some(d) => data = PathBuf::from(d),
                None => bail!("--data needs a directory; {USAGE}"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "load" | "render" if command.is_none() => command = Some(a),
            other => bail!("unexpected argument {other:?}; {USAGE}"),
        }
    }
    match command.as_deref() {
        Some("load") => witness_egress::load(&data),
        Some("render") => witness_egress::render_cmd(&data),
        _ => bail!("no command given; {USAGE}"),
    }
}
