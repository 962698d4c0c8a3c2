//! The `oneoff` binary: parses the command line and hands it to the subcommand in `cmd`.
//!
//! Client commands talk to a server through `oneoff_api::Client`; `serve` runs the server
//! itself; `check-config` works offline. Errors become a message and an exit code in
//! `cmd::report`.

use std::process::ExitCode;

mod cli;
mod cmd;
mod doctor;
mod follow;
mod output;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_noting_sources();
    // The server sets up its own logging; the client only logs when asked (ONEOFF_LOG=debug).
    if !matches!(cli.command, Command::Serve(_)) {
        init_client_logging();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            output::stderr_line(&format!("oneoff: cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let opts = cli.client.clone();
    match runtime.block_on(cmd::dispatch(cli.command)) {
        Ok(code) => code,
        Err(error) => cmd::report(&error, &opts),
    }
}

fn init_client_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONEOFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(oneoff_server::colour_on_stderr())
        .try_init();
}
