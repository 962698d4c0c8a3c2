//! What a starting server does with runs a previous process left behind.
//!
//! `running` rows mean the previous process died without finishing them (a clean shutdown
//! always writes a final state): they become `lost`, since nobody knows how they ended.
//! `queued` rows are the persisted FIFO queue: they are queued again, oldest first, unless
//! they can no longer run exactly as requested.

use std::collections::BTreeMap;
use std::sync::Arc;

use oneoff_core::params::{self, ParamInput};
use oneoff_core::run::{RunRecord, StoredParam};
use oneoff_core::{LogEntry, LogStream, RunStatus};
use oneoff_store::{Finish, StoreError};

use super::{ExecutorHandle, Pending};
use crate::clock::now_us;

/// How many runs recovery touched.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    pub lost: usize,
    pub requeued: usize,
    pub failed: usize,
}

pub async fn recover(executor: &ExecutorHandle) -> Result<Recovered, StoreError> {
    let store = &executor.store;
    let mut recovered = Recovered::default();
    for run in store.runs_with_status(RunStatus::Running).await? {
        let message = "the server stopped while this run was running (crash or kill -9); its outcome is unknown";
        let entry = LogEntry {
            seq: store.last_seq(run.id).await? + 1,
            ts_us: now_us(),
            stream: LogStream::System,
            bytes: message.as_bytes().to_vec(),
        };
        store.append_log(run.id, &[entry]).await?;
        let finish = Finish {
            status: RunStatus::Lost,
            finished_at_us: now_us(),
            exit_code: None,
            signal: None,
            error: Some(message.into()),
        };
        store.finish_run(run.id, &finish).await?;
        tracing::warn!(run = %run.id, job = %run.job, "run marked lost");
        recovered.lost += 1;
    }
    for run in store.runs_with_status(RunStatus::Queued).await? {
        match pending_again(executor, &run) {
            Ok(pending) => {
                executor.hub.open(run.id);
                match executor.submit(pending).await {
                    Ok(()) => recovered.requeued += 1,
                    Err(error) => {
                        fail(executor, &run, error.to_string()).await?;
                        recovered.failed += 1;
                    }
                }
            }
            Err(reason) => {
                fail(executor, &run, reason).await?;
                recovered.failed += 1;
            }
        }
    }
    Ok(recovered)
}

/// Rebuilds the launch of a queued run from its stored parameters and the current catalog.
fn pending_again(executor: &ExecutorHandle, run: &RunRecord) -> Result<Pending, String> {
    let job = executor
        .config
        .catalog
        .get(&run.job)
        .ok_or_else(|| format!("job `{}` is no longer in the catalog", run.job))?;
    let mut inputs = BTreeMap::new();
    for (name, value) in &run.params {
        let input = match value {
            StoredParam::Text(text) => ParamInput::Text(text.clone()),
            StoredParam::Integer(number) => ParamInput::Integer(*number),
            StoredParam::Boolean(flag) => ParamInput::Boolean(*flag),
            StoredParam::Redacted => {
                return Err(format!(
                    "secret parameter `{name}` is not kept across a server restart; start the run again"
                ));
            }
        };
        inputs.insert(name.clone(), input);
    }
    let resolved = params::resolve(&job.params, inputs).map_err(|errors| {
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("the job's parameters changed while the run was queued: {}", shown.join("; "))
    })?;
    let launch = job.launch(run.id, &resolved);
    if launch.argv != run.argv {
        return Err("the job's command changed while the run was queued; start the run again".into());
    }
    Ok(Pending { run: run.id, job: Arc::new(job.clone()), launch, secrets: Vec::new() })
}

async fn fail(executor: &ExecutorHandle, run: &RunRecord, reason: String) -> Result<(), StoreError> {
    tracing::warn!(run = %run.id, job = %run.job, %reason, "queued run cannot be resumed");
    let finish = Finish {
        status: RunStatus::Failed,
        finished_at_us: now_us(),
        exit_code: None,
        signal: None,
        error: Some(reason),
    };
    executor.store.finish_run(run.id, &finish).await?;
    executor.hub.finish(run.id);
    Ok(())
}
