//! `oneoff audit [verify]`: the audit trail, newest first, or a check of its hash chain.

use std::process::ExitCode;

use super::client;
use crate::cli::AuditArgs;
use crate::output;

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.client);
    if args.verify.is_some() {
        let verification = client.verify_audit().await?;
        if args.client.json {
            output::json(&verification)?;
        } else if verification.ok {
            output::stdout_line(&format!("audit trail intact: {} records, every hash matches", verification.records))?;
        } else {
            output::stdout_line(&format!(
                "audit trail BROKEN at record {}: {} ({} records before it verify)",
                verification.broken_at.unwrap_or_default(),
                verification.reason.clone().unwrap_or_default(),
                verification.records
            ))?;
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
            ]
        })
        .collect();
    output::stdout(&output::table(&["ID", "AT", "ACTOR", "ACTION", "JOB", "RUN", "CLIENT"], &rows))?;
    Ok(ExitCode::SUCCESS)
}
