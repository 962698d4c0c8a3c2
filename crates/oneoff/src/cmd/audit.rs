//! `oneoff audit [verify [--head HASH [--count N [--mac MAC]]]]`: the audit trail, newest
//! first, or a check of its hash chain, its signed head and a checkpoint.

use std::process::ExitCode;

use super::client;
use crate::cli::AuditArgs;
use crate::output;

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.client);
    if args.verify.is_some() {
        let mut query = Vec::new();
        for (key, value) in [
            ("head", args.head.clone()),
            ("count", args.count.map(|count| count.to_string())),
            ("mac", args.mac.clone()),
        ] {
            query.extend(value.map(|value| (key, value)));
        }
        let verification = client.verify_audit(&query).await?;
        if args.client.json {
            output::json(&verification)?;
        } else {
            output::stdout(&verdict(&verification))?;
        }
        return Ok(if verification.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let mut query = vec![("limit", args.limit.to_string())];
    for (key, value) in [("actor", &args.actor), ("action", &args.action), ("job", &args.job)] {
        if let Some(value) = value {
            query.push((key, value.clone()));
        }
    }
    let list = client.audit(&query).await?;
    if args.client.json {
        output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .records
        .iter()
        .map(|record| {
            vec![
                record.id.to_string(),
                output::short_time(&record.at),
                record.actor.clone(),
                record.action.clone(),
                record.job.clone().unwrap_or_else(|| "-".into()),
                record.run_id.map(|run| run.to_string()).unwrap_or_else(|| "-".into()),
                record.client.clone(),
                record.message.clone(),
            ]
        })
        .collect();
    output::stdout(&output::table(&["ID", "AT", "ACTOR", "ACTION", "JOB", "RUN", "CLIENT", "MESSAGE"], &rows))?;
    Ok(ExitCode::SUCCESS)
}

/// What `verify` found, one line per check.
fn verdict(verification: &oneoff_api::v1::AuditVerification) -> String {
    let mut lines = Vec::new();
    match (verification.broken_at, verification.ok) {
        (Some(record), _) => lines.push(format!(
            "audit trail BROKEN at record {record}: {} ({} records before it verify)",
            verification.reason.clone().unwrap_or_default(),
            verification.records
        )),
        (None, true) => lines.push(format!("audit trail intact: {} records, every hash matches", verification.records)),
        (None, false) => lines.push(format!(
            "audit trail BROKEN: {} ({} records, every hash matches)",
            verification.reason.clone().unwrap_or_default(),
            verification.records
        )),
    }
    if verification.broken_at.is_none() {
        lines.push(match verification.keyed {
            true => "signed head: checked with the server's audit key".to_string(),
            false => "signed head: not checked (the server has no audit key)".to_string(),
        });
    }
    if let Some(checkpoint) = &verification.checkpoint {
        lines.push(match checkpoint.at_record {
            Some(record) => format!("checkpoint {}: held, at record {record}", checkpoint.head),
            None => format!("checkpoint {}: NOT in the chain", checkpoint.head),
        });
    }
    if let Some(head) = &verification.head {
        lines.push(format!(
            "head now: --count {} --head {head} (keep it elsewhere to check later)",
            verification.records
        ));
    }
    lines.join("\n") + "\n"
}
