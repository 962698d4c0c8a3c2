//! The subcommands, one module each: dispatch from the parsed command line, and the
//! single place where an error becomes a message on stderr and an exit code.

use std::fmt;
use std::io;
use std::process::ExitCode;

use oneoff_api::{Client, ClientError};

use crate::cli::{ClientOpts, Command};
use crate::output::stderr_line;

pub mod audit;
pub mod cancel;
pub mod check_config;
pub mod completions;
pub mod doctor;
pub mod jobs;
pub mod logs;
pub mod migrate_store;
pub mod replicas;
pub mod run;
pub mod runs;
pub mod serve;
pub mod status;
pub mod token;

/// Exit code for anything that went wrong on the way: the network, the server, our output.
const EXIT_FAILURE: u8 = 1;
/// Exit code for a request the server (or we) rejected as wrong: bad input, unknown job or run.
const EXIT_USAGE: u8 = 2;
/// Exit code of `oneoff run --follow` when oneoff itself failed (a usage error, the network,
/// the server) rather than the job: that command exits with the job's own code otherwise, so
/// 1 and 2 are the job's. 125, as `docker run` and `podman run` use it for their own errors.
const EXIT_OWN_FAILURE_WHILE_FOLLOWING: u8 = 125;

pub async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Jobs(args) => jobs::run(args).await,
        // Its exit code is the job's: oneoff's own failures must not pass for one.
        Command::Run(args) if args.follow => {
            let opts = args.client.clone();
            Ok(match run::run(args).await {
                Ok(code) => code,
                Err(error) => report_with(&error, &opts, Some(EXIT_OWN_FAILURE_WHILE_FOLLOWING)),
            })
        }
        Command::Run(args) => run::run(args).await,
        Command::Runs(args) => runs::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Cancel(args) => cancel::run(args).await,
        Command::CheckConfig(args) => Ok(check_config::run(&args)),
        Command::Serve(args) => serve::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Token(args) => token::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Whoami(args) => token::whoami(args).await,
        Command::Replicas(args) => replicas::run(args).await,
        Command::MigrateStore(args) => migrate_store::run(args).await,
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
    }
}

pub fn client(opts: &ClientOpts) -> Client {
    if opts.token_from_flag {
        // As mysql(1) does: the flag is fine for a try, not for a habit.
        stderr_line("oneoff: warning: --token is visible to every user of this host (ps); prefer ONEOFF_TOKEN or ~/.config/oneoff/token");
    }
    Client::with_token(&opts.server, token::load(opts).as_deref())
}

/// A mistake in how the command was used that clap cannot see (e.g. a parameter given twice).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Prints `error` as `oneoff: <message>` (plus a 422's per-field messages) and picks the exit
/// code; `opts` say where the token came from, for the hint after a 401.
pub fn report(error: &anyhow::Error, opts: &ClientOpts) -> ExitCode {
    report_with(error, opts, None)
}

/// As [`report`], with `code` instead of the one the error would pick.
fn report_with(error: &anyhow::Error, opts: &ClientOpts, code: Option<u8>) -> ExitCode {
    if is_broken_pipe(error) {
        // Whoever read our output has had enough (`oneoff logs 1 | head`): not a failure.
        return ExitCode::SUCCESS;
    }
    let client_error = error.chain().find_map(|cause| cause.downcast_ref::<ClientError>());
    match client_error {
        Some(ClientError::Api { message, fields, .. }) if !fields.is_empty() => {
            stderr_line(&format!("oneoff: {}", headline(message)));
            for field in fields {
                stderr_line(&format!("  {}: {}", field.field, field.message));
            }
        }
        _ => stderr_line(&format!("oneoff: {}", describe(error))),
    }
    if let Some(ClientError::Api { status, .. }) = client_error {
        if status.as_u16() == 401 {
            // The server cannot know where the CLI looks for a token; we can.
            stderr_line(&token::sign_in_hint(&token::origin(opts)));
        }
    }
    ExitCode::from(code.unwrap_or_else(|| exit_code(error)))
}

/// A 422's message is `invalid parameters: a: ...; b: ...`; the fields are printed one per
/// line below it, so only the part before the list is kept.
fn headline(message: &str) -> &str {
    message.split_once(": ").map_or(message, |(head, _)| head)
}

fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|cause| cause.is::<UsageError>()) {
        return EXIT_USAGE;
    }
    match error.chain().find_map(|cause| cause.downcast_ref::<ClientError>()) {
        Some(ClientError::Api { status, .. }) => api_exit_code(status.as_u16()),
        Some(ClientError::Usage(_)) => EXIT_USAGE,
        _ => EXIT_FAILURE,
    }
}

/// 400, 404 and 422 mean the request was wrong (a typo, an unknown job, a bad parameter);
/// anything else (409 already finished, 5xx) is a failure of the operation itself.
fn api_exit_code(status: u16) -> u8 {
    match status {
        400 | 404 | 422 => EXIT_USAGE,
        _ => EXIT_FAILURE,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
}

/// The message, without the repetition reqwest's nested errors would add: everything down
/// to the client error, whose own text ends with the root cause.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        if !text.is_empty() {
            text.push_str(": ");
        }
        if let Some(client_error) = cause.downcast_ref::<ClientError>() {
            text.push_str(&client_error_text(client_error));
            return text;
        }
        text.push_str(&cause.to_string());
    }
    text
}

/// A client error's message, plus its root cause when the message does not already say it
/// (reqwest's "error sending request" hides the "Connection refused" underneath).
pub fn client_error_text(error: &ClientError) -> String {
    let mut root: &dyn std::error::Error = error;
    while let Some(source) = root.source() {
        root = source;
    }
    let root_text = root.to_string();
    if let ClientError::Transport { url, .. } = error {
        // reqwest's own "error sending request for url (…)" says nothing the cause does not.
        return format!("cannot reach {url}: {root_text}");
    }
    let mut text = error.to_string();
    if !text.contains(&root_text) {
        text.push_str(": ");
        text.push_str(&root_text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_requests_exit_2_and_other_api_errors_exit_1() {
        assert_eq!(api_exit_code(400), 2);
        assert_eq!(api_exit_code(404), 2);
        assert_eq!(api_exit_code(422), 2);
        assert_eq!(api_exit_code(409), 1);
        assert_eq!(api_exit_code(500), 1);
        assert_eq!(api_exit_code(503), 1);
    }

    #[test]
    fn usage_errors_exit_2_and_anything_else_1() {
        let usage = anyhow::Error::new(UsageError("parameter `a` given twice".into()));
        assert_eq!(exit_code(&usage), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), 1);
    }

    #[test]
    fn field_list_is_cut_from_the_headline() {
        assert_eq!(headline("invalid parameters: a: is required; b: too long"), "invalid parameters");
        assert_eq!(headline("invalid parameters"), "invalid parameters");
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let error = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing the log");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
