//! `witness`: the appliance daemon and its admin CLI. This is the only crate that knows every
//! other one; it wires the index, the recorder and the proxies together and owns process-level
//! concerns (signals, logging, exit codes).

mod audit_checkpoint;
mod cmd;
mod daemon;
mod datadir;
mod egress;
mod evidence;
mod identity;
mod local_console;
mod ocr;
mod pipeline;
mod playback;
mod provision;
mod retention;
mod search;
mod sync;
mod views;

#[cfg(test)]
mod layers;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cmd::cli::Cli::parse();
    witness_keys::on_unseal_failure(local_console::keys_will_not_open);
    // The daemon logs what it does; admin commands print their results and log only problems.
    init_logging(if matches!(cli.command, cmd::cli::Command::Serve(_)) { "info,russh=warn" } else { "warn" });
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Said on stdout already; its own exit code.
        Err(e) if e.is::<cmd::admin::NotCompared>() => ExitCode::from(cmd::admin::NotCompared::EXIT_CODE),
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "what failed: why".
            eprintln!("witness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Dependencies that handle credentials and log them (or the structures holding them) in their
/// own debug and trace output; whatever `WITNESS_LOG` asks, they speak at info and above only.
const CREDENTIAL_HANDLERS: &[&str] =
    &["sspi", "ironrdp_connector", "ironrdp_acceptor", "picky", "russh::client::encrypted"];

fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_env("WITNESS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let no_secrets = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || !CREDENTIAL_HANDLERS.iter().any(|t| meta.target().starts_with(t))
    });
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour only for a person at a terminal: the journal and log files get plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(no_secrets),
        )
        .with(filter)
        .try_init();
}
