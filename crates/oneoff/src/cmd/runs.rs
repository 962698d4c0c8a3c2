//! `oneoff runs`: recent runs as a table, newest first, with filters and paging.

use std::process::ExitCode;

use oneoff_api::client::RunQuery;
use oneoff_api::v1::Run;

use crate::cli::RunsArgs;
use crate::cmd::client;
use crate::output::{self, duration_ms, short_time, stderr_line};

pub async fn run(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let query = RunQuery {
        job: args.job.clone(),
        status: args.status.map(|status| status.to_string()),
        requested_by: args.user.clone(),
        limit: args.limit,
        before: args.before.map(|id| id.0),
    };
    let list = client(&args.client).runs(&query).await?;
    if args.client.json {
        output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.runs.is_empty() {
        stderr_line("no runs");
    } else {
        output::stdout(&runs_table(&list.runs))?;
    }
    if let Some(before) = list.next_before {
        stderr_line(&format!("more: {}", next_page_command(&args, before)));
    }
    Ok(ExitCode::SUCCESS)
}

fn runs_table(runs: &[Run]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            vec![
                run.id.to_string(),
                run.job.clone(),
                run.status.clone(),
                exit_cell(run),
                run.started_at.as_deref().map_or_else(dash, short_time),
                run.duration_ms.map_or_else(dash, duration_ms),
                run.requested_by.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    output::table(&["id", "job", "status", "exit", "started", "duration", "by"], &rows)
}

/// The exit code, or the signal's name when a signal ended the run.
fn exit_cell(run: &Run) -> String {
    match (run.exit_code, &run.signal_name) {
        (Some(code), _) => code.to_string(),
        (None, Some(name)) => name.clone(),
        (None, None) => "-".to_string(),
    }
}

/// The command that shows the next (older) page with the same filters.
fn next_page_command(args: &RunsArgs, before: i64) -> String {
    let mut command = format!("oneoff runs --before {before}");
    if let Some(job) = &args.job {
        command.push_str(&format!(" --job {}", output::shell_quote(job)));
    }
    if let Some(status) = args.status {
        command.push_str(&format!(" --status {status}"));
    }
    if let Some(user) = &args.user {
        command.push_str(&format!(" --user {}", output::shell_quote(user)));
    }
    if let Some(limit) = args.limit {
        command.push_str(&format!(" --limit {limit}"));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run(id: i64, status: &str, exit_code: Option<i32>, signal_name: Option<&str>) -> Run {
        Run {
            id,
            job: "backup".into(),
            status: status.into(),
            params: BTreeMap::new(),
            argv: vec![],
            requested_by: Some("ann".into()),
            created_at: "2026-01-01T12:00:00Z".into(),
            started_at: Some("2026-01-01T12:00:03.5Z".into()),
            finished_at: None,
            duration_ms: Some(184_000),
            exit_code,
            signal: None,
            signal_name: signal_name.map(str::to_string),
            error: None,
            replica: None,
        }
    }

    #[test]
    fn table_shows_exit_code_or_signal() {
        let mut queued = run(9, "queued", None, None);
        queued.started_at = None;
        queued.duration_ms = None;
        queued.requested_by = None;
        let runs = [run(12, "failed", Some(3), None), run(10, "failed", None, Some("SIGKILL")), queued];
        assert_eq!(
            runs_table(&runs),
            "ID  JOB     STATUS  EXIT     STARTED              DURATION  BY\n\
             12  backup  failed  3        2026-01-01 12:00:03  3m04s     ann\n\
             10  backup  failed  SIGKILL  2026-01-01 12:00:03  3m04s     ann\n\
             9   backup  queued  -        -                    -         -\n"
        );
    }

    #[test]
    fn next_page_hint_keeps_the_filters() {
        let args = RunsArgs {
            job: Some("backup".into()),
            status: Some(oneoff_core::RunStatus::Failed),
            user: Some("ann smith".into()),
            limit: None,
            before: None,
            client: crate::cli::ClientOpts { server: crate::cli::DEFAULT_SERVER.into(), ..Default::default() },
        };
        assert_eq!(
            next_page_command(&args, 7),
            "oneoff runs --before 7 --job backup --status failed --user 'ann smith'"
        );
    }
}
