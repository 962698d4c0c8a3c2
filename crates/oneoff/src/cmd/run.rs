//! `oneoff run JOB [-p name=value]... [--follow]`: starts a run, and with `--follow`
//! streams its log and exits with the job's own exit code, so `oneoff run -f` can stand
//! in for running the job locally in scripts.

use std::collections::BTreeMap;
use std::process::ExitCode;

use oneoff_api::v1::Run;
use oneoff_core::RunStatus;
use serde_json::Value;

use crate::cli::{ClientOpts, RunArgs, DEFAULT_SERVER};
use crate::cmd::{client, UsageError};
use crate::follow::{self, Format, Printer};
use crate::output::{self, duration_ms, stderr_line};

/// Exit codes of a followed run that did not end with its own exit status, after the
/// conventions of `timeout(1)` (124) and of shells for Ctrl-C (130) and signals (128+n).
const EXIT_TIMED_OUT: u8 = 124;
const EXIT_CANCELLED: u8 = 130;
const EXIT_SIGNAL_BASE: i32 = 128;
const EXIT_UNKNOWN: u8 = 1;

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let params = params_body(args.params)?;
    let client = client(&args.client);
    let run = client.create_run(&args.job, params).await?;
    if !args.follow {
        report_started(&run, &args.client)?;
        return Ok(ExitCode::SUCCESS);
    }
    stderr_line(&format!("run #{} started", run.id));
    let format = if args.client.json { Format::Json } else { Format::Text { timestamps: false } };
    follow::print_log(&client, run.id, follow::Start::After(0), true, &mut Printer::stdio(format)).await?;
    let finished = follow::fetch_run(&client, run.id).await?;
    stderr_line(&summary(&finished));
    Ok(ExitCode::from(exit_code(&finished)))
}

fn report_started(run: &Run, opts: &ClientOpts) -> std::io::Result<()> {
    if opts.json {
        return output::json(run);
    }
    output::stdout_line(&format!("started run #{} ({})", run.id, run.status))?;
    let server = if opts.server == DEFAULT_SERVER { String::new() } else { format!(" --server {}", opts.server) };
    stderr_line(&format!("follow its log: oneoff logs {} -f{server}", run.id));
    Ok(())
}

/// Parses one `-p` value: `name=value`, split at the first `=` so values may contain `=`.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.to_string())),
        Some(_) => Err(format!("`{text}` has no parameter name before `=`")),
        None => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// The `params` of the request. Values go as JSON strings: the server converts text to
/// each parameter's type by the same rules as typed input, so "5" becomes an integer there.
fn params_body(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, Value>, UsageError> {
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if params.contains_key(&name) {
            return Err(UsageError(format!("parameter `{name}` is given more than once")));
        }
        params.insert(name, Value::String(value));
    }
    Ok(params)
}

fn status_of(run: &Run) -> Option<RunStatus> {
    run.status.parse().ok()
}

/// The exit code that stands for how a finished run ended.
fn exit_code(run: &Run) -> u8 {
    match status_of(run) {
        Some(RunStatus::Succeeded) => 0,
        Some(RunStatus::Failed) => failed_exit_code(run),
        Some(RunStatus::TimedOut) => EXIT_TIMED_OUT,
        Some(RunStatus::Cancelled) => EXIT_CANCELLED,
        _ => EXIT_UNKNOWN,
    }
}

fn failed_exit_code(run: &Run) -> u8 {
    let code = match (run.exit_code, run.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => EXIT_SIGNAL_BASE + signal,
        (None, None) => return EXIT_UNKNOWN,
    };
    // A failed run must not look like success, and an exit code is 1..=255 anyway.
    u8::try_from(code).ok().filter(|code| *code != 0).unwrap_or(EXIT_UNKNOWN)
}

/// One line about how the run ended, e.g. `run #42 failed: exit code 3 after 1.2s`.
fn summary(run: &Run) -> String {
    let how = match status_of(run) {
        Some(RunStatus::Succeeded) => "succeeded".to_string(),
        Some(RunStatus::Failed) => format!("failed: {}", failure_reason(run)),
        Some(RunStatus::TimedOut) => "timed out".to_string(),
        Some(RunStatus::Cancelled) => "was cancelled".to_string(),
        Some(RunStatus::Lost) => {
            format!("was lost: {}", run.error.as_deref().unwrap_or("the server stopped while it ran"))
        }
        _ => format!("ended as {}", run.status),
    };
    match run.duration_ms {
        Some(ms) => format!("run #{} {how} after {}", run.id, duration_ms(ms)),
        None => format!("run #{} {how}", run.id),
    }
}

fn failure_reason(run: &Run) -> String {
    match (run.exit_code, &run.signal_name, run.signal, &run.error) {
        (Some(code), ..) => format!("exit code {code}"),
        (None, Some(name), ..) => format!("killed by {name}"),
        (None, None, Some(signal), _) => format!("killed by signal {signal}"),
        (None, None, None, Some(error)) => error.clone(),
        (None, None, None, None) => "no exit status".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(status: &str, exit_code: Option<i32>, signal: Option<i32>) -> Run {
        Run {
            id: 42,
            job: "backup".into(),
            status: status.into(),
            params: BTreeMap::new(),
            argv: vec!["backup".into()],
            requested_by: None,
            created_at: "2026-01-01T12:00:00Z".into(),
            started_at: Some("2026-01-01T12:00:01Z".into()),
            finished_at: Some("2026-01-01T12:00:02Z".into()),
            duration_ms: Some(1234),
            exit_code,
            signal,
            signal_name: signal.map(oneoff_api::v1::signal_name),
            error: None,
            replica: None,
        }
    }

    #[test]
    fn params_split_at_the_first_equals_sign() {
        assert_eq!(parse_param("name=value"), Ok(("name".into(), "value".into())));
        assert_eq!(parse_param("query=a=b"), Ok(("query".into(), "a=b".into())));
        assert_eq!(parse_param("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=value").is_err());
    }

    #[test]
    fn params_are_sent_as_strings_and_may_not_repeat() {
        let body = params_body(vec![("count".into(), "5".into()), ("name".into(), "x".into())]).expect("valid");
        assert_eq!(body.get("count"), Some(&Value::String("5".into())));
        let twice = params_body(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert!(twice.is_err());
    }

    #[test]
    fn exit_codes_follow_how_the_run_ended() {
        assert_eq!(exit_code(&run_with("succeeded", Some(0), None)), 0);
        assert_eq!(exit_code(&run_with("failed", Some(3), None)), 3);
        assert_eq!(exit_code(&run_with("failed", None, Some(9))), 137);
        assert_eq!(exit_code(&run_with("failed", None, None)), 1);
        assert_eq!(exit_code(&run_with("failed", Some(0), None)), 1);
        assert_eq!(exit_code(&run_with("failed", Some(300), None)), 1);
        assert_eq!(exit_code(&run_with("timed_out", None, Some(15))), 124);
        assert_eq!(exit_code(&run_with("cancelled", Some(0), None)), 130);
        assert_eq!(exit_code(&run_with("lost", None, None)), 1);
        assert_eq!(exit_code(&run_with("something_new", None, None)), 1);
    }

    #[test]
    fn summary_says_how_and_how_long() {
        assert_eq!(summary(&run_with("failed", Some(3), None)), "run #42 failed: exit code 3 after 1.2s");
        assert_eq!(summary(&run_with("failed", None, Some(9))), "run #42 failed: killed by SIGKILL after 1.2s");
        assert_eq!(summary(&run_with("succeeded", Some(0), None)), "run #42 succeeded after 1.2s");
        let mut never_started = run_with("failed", None, None);
        never_started.duration_ms = None;
        never_started.error = Some("cannot start `nope`: not found".into());
        assert_eq!(summary(&never_started), "run #42 failed: cannot start `nope`: not found");
    }
}
