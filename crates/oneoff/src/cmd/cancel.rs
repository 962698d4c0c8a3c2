//! `oneoff cancel RUN`: asks the server to stop a run (SIGTERM, then SIGKILL after the
//! job's grace period). A run that already finished is a 409, reported as a failure.

use std::process::ExitCode;

use crate::cli::CancelArgs;
use crate::cmd::client;
use crate::output;

pub async fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let run = client(&args.client).cancel(args.run.0).await?;
    if args.client.json {
        output::json(&run)?;
    } else {
        output::stdout_line(&format!("cancel requested for run #{} (status: {})", run.id, run.status))?;
    }
    Ok(ExitCode::SUCCESS)
}
