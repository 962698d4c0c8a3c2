//! `oneoff status RUN`: everything the server knows about one run, as `key: value` lines.

use std::process::ExitCode;

use oneoff_api::v1::Run;
use serde_json::Value;

use crate::cli::StatusArgs;
use crate::cmd::client;
use crate::output::{self, duration_ms, shell_quote, short_time};

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let run = client(&args.client).run(args.run.0).await?;
    if args.client.json {
        output::json(&run)?;
    } else {
        output::stdout(&output::key_values(&details(&run)))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn details(run: &Run) -> Vec<(&'static str, String)> {
    let dash = || "-".to_string();
    let mut pairs = vec![
        ("id", format!("#{}", run.id)),
        ("job", run.job.clone()),
        ("status", run.status.clone()),
        ("params", params_text(run)),
        ("argv", output::command_line(&run.argv)),
        ("requested by", run.requested_by.clone().unwrap_or_else(dash)),
        ("created", short_time(&run.created_at)),
        ("started", run.started_at.as_deref().map_or_else(dash, short_time)),
        ("finished", run.finished_at.as_deref().map_or_else(dash, short_time)),
        ("duration", run.duration_ms.map_or_else(dash, duration_ms)),
        ("replica", run.replica.clone().unwrap_or_else(dash)),
    ];
    match (run.exit_code, &run.signal_name, run.signal) {
        (Some(code), ..) => pairs.push(("exit code", code.to_string())),
        (None, Some(name), Some(number)) => pairs.push(("signal", format!("{name} ({number})"))),
        (None, Some(name), None) => pairs.push(("signal", name.clone())),
        (None, None, Some(number)) => pairs.push(("signal", number.to_string())),
        (None, None, None) => {}
    }
    if let Some(error) = &run.error {
        pairs.push(("error", error.clone()));
    }
    pairs
}

/// `name=value` pairs, quoted like shell words so values with spaces stay readable.
fn params_text(run: &Run) -> String {
    if run.params.is_empty() {
        return "-".to_string();
    }
    let pairs: Vec<String> = run
        .params
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            format!("{name}={}", shell_quote(&text))
        })
        .collect();
    pairs.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn details_show_every_field() {
        let params = BTreeMap::from([
            ("count".to_string(), Value::from(5)),
            ("note".to_string(), Value::String("two words".into())),
            ("token".to_string(), Value::String("********".into())),
        ]);
        let run = Run {
            id: 42,
            job: "backup".into(),
            status: "failed".into(),
            params,
            argv: vec!["backup".into(), "--note".into(), "two words".into()],
            requested_by: None,
            created_at: "2026-01-01T12:00:00.5Z".into(),
            started_at: Some("2026-01-01T12:00:01Z".into()),
            finished_at: Some("2026-01-01T12:00:02Z".into()),
            duration_ms: Some(1234),
            exit_code: None,
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
            error: Some("killed".into()),
            replica: Some("a".into()),
        };
        assert_eq!(
            output::key_values(&details(&run)),
            "id:           #42\n\
             job:          backup\n\
             status:       failed\n\
             params:       count=5 note='two words' token='********'\n\
             argv:         backup --note 'two words'\n\
             requested by: -\n\
             created:      2026-01-01 12:00:00\n\
             started:      2026-01-01 12:00:01\n\
             finished:     2026-01-01 12:00:02\n\
             duration:     1.2s\n\
             replica:      a\n\
             signal:       SIGKILL (9)\n\
             error:        killed\n"
        );
    }

    #[test]
    fn a_multi_line_script_is_shown_as_it_runs() {
        let params = BTreeMap::from([("note".to_string(), Value::String("a\nb".into()))]);
        let run = Run {
            id: 1,
            job: "backfill".into(),
            status: "running".into(),
            params,
            argv: vec!["sh".into(), "-c".into(), "since=\"$1\"\necho \"$since\"".into(), "sh".into(), "".into()],
            requested_by: None,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            exit_code: None,
            signal: None,
            signal_name: None,
            error: None,
            replica: None,
        };
        let shown = output::key_values(&details(&run));
        assert!(shown.contains("argv:         sh -c $'since=\"$1\"\\necho \"$since\"' sh ''\n"), "{shown}");
        assert!(shown.contains("params:       note=$'a\\nb'\n"), "{shown}");
    }
}
