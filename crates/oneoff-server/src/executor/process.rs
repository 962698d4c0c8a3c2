//! Supervising one run, whatever runs it: mark it running, start the task that numbers and
//! stores its lines, hand the run to its [`Runner`] (which starts, follows and stops its
//! processes, see [`super::runner`]), wait for the last line to be stored, then record the
//! final state and tell the hub. A run whose lines could not all be stored never succeeds.

use std::sync::Arc;
use std::time::Duration;

use oneoff_core::run::final_status;
use oneoff_core::{ExitKind, JobSpec, Launch, RunId, RunStatus, StopReason};
use oneoff_store::{Finish, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::capture;
use super::isolation::Isolation;
use super::log_writer::{with_store_retries, LogWriter, Unstored};
use super::runner::{Assignment, Ended, LocalRunner, Output, Runner, Stops, Whereabouts};
use crate::clock::now_us;
use crate::hub::LogHub;

/// How long each background attempt to record a run's end retries before it starts over.
const FINISH_RETRY_PERIOD: Duration = Duration::from_secs(60);

pub struct Supervision {
    pub run: RunId,
    pub job: Arc<JobSpec>,
    pub launch: Launch,
    /// The values every masker of this run masks (all runs' and the server's).
    pub book: super::SecretBook,
    /// This run's place in the book, given up when the supervision ends.
    pub book_entry: Option<super::BookEntry>,
    pub store: Store,
    pub hub: LogHub,
    pub writer: LogWriter,
    pub max_line_bytes: usize,
    pub partial_line_flush: Duration,
    pub isolation: Arc<Isolation>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub async fn supervise(context: Supervision, stop_requests: mpsc::Receiver<StopReason>) {
    let run = context.run;
    let started = std::time::Instant::now();
    // Every run is local today; another runner would be chosen here, from the job.
    let runner = Runner::Local(LocalRunner::new(context.isolation.clone()));
    let finish = match run_to_end(&context, &runner, stop_requests).await {
        Ok((ended, unstored)) => final_state(ended, unstored.as_ref()),
        Err(error) => {
            tracing::error!(run = %run, %error, "run could not be supervised");
            Finish {
                status: RunStatus::Failed,
                finished_at_us: now_us(),
                exit_code: None,
                signal: None,
                // A full or read-only disk is no bug: say which.
                error: Some(if error.is_storage_fault() {
                    error.to_string()
                } else {
                    format!("internal error: {error}")
                }),
            }
        }
    };
    tracing::info!(run = %run, job = %context.job.name, status = %finish.status, exit_code = ?finish.exit_code, signal = ?finish.signal, "run finished");
    // A store that refuses writes (a full disk) gets the same wait as the run's lines, then
    // is tried again in the background until it takes the outcome or closes.
    let store = context.store.clone();
    // Counted once the store has the final state: the metric and the API agree.
    let (metrics, job, ran) = (context.metrics.clone(), context.job.name.to_string(), started.elapsed());
    match with_store_retries(context.writer.store_wait(), || store.finish_run(run, &finish)).await {
        Ok(()) => metrics.run_finished(&job, finish.status, Some(ran)),
        Err(error) if error.is_storage_fault() => {
            tracing::error!(run = %run, %error, "cannot record how the run ended yet; trying again until the store can write");
            tokio::spawn(
                async move {
                    while let Err(error) =
                        with_store_retries(FINISH_RETRY_PERIOD, || store.finish_run(run, &finish)).await
                    {
                        if !error.is_storage_fault() {
                            tracing::error!(run = %run, %error, "cannot record how the run ended");
                            return;
                        }
                    }
                    metrics.run_finished(&job, finish.status, Some(ran));
                    tracing::info!(run = %run, "recorded how the run ended, once the store could write again");
                }
                .in_current_span(),
            );
        }
        Err(error) => tracing::error!(run = %run, %error, "cannot record how the run ended"),
    }
    context.hub.finish(run);
    // Its processes and pipes are gone: the book keeps its values only for the runs that
    // were live with it.
    drop(context.book_entry);
}

async fn run_to_end(
    context: &Supervision,
    runner: &Runner,
    stop_requests: mpsc::Receiver<StopReason>,
) -> Result<(Ended, Option<Unstored>), oneoff_store::StoreError> {
    let run = context.run;
    // The claim (`Store::claim_runs`) made the run `running` on this replica already.
    let first_seq = context.store.last_seq(run).await?;
    let (lines, incoming) = capture::line_channel();
    let store_refused = CancellationToken::new();
    let writer = tokio::spawn(
        capture::write_log(run, context.writer.clone(), first_seq, incoming, store_refused.clone()).in_current_span(),
    );
    let output = Output::new(lines, context.max_line_bytes, context.partial_line_flush, context.book.clone());
    let assignment = Assignment {
        run,
        job: &context.job,
        launch: &context.launch,
        stops: Stops { requests: stop_requests, store_refused },
        output: &output,
        whereabouts: Whereabouts::new(run, &context.store),
    };
    let ended = runner.run(assignment).await;
    // The runner's readers are done: with the last sender gone, the log writer ends.
    drop(output);
    // Output that could not be stored (the log says so, if it could): the run then fails.
    let unstored = writer.await.unwrap_or_else(|_| {
        tracing::error!(run = %run, "log writer panicked");
        None
    });
    Ok((ended, unstored))
}

/// How a run that ended as `ended` is recorded. Never `succeeded` with lines missing: a run
/// with `unstored` output fails, and its error field says what the log could not.
fn final_state(ended: Ended, unstored: Option<&Unstored>) -> Finish {
    let (exit_code, signal) = match ended.exit {
        ExitKind::Code(code) => (Some(code), None),
        ExitKind::Signal(signal) => (None, Some(signal)),
        ExitKind::SpawnFailed => (None, None),
    };
    let (status, error) = match unstored {
        None => (final_status(ended.exit, ended.stop), ended.error),
        Some(unstored) => {
            let lost = unstored.error();
            (RunStatus::Failed, Some(ended.error.map_or(lost.clone(), |error| format!("{error}; {lost}"))))
        }
    };
    Finish { status, finished_at_us: now_us(), exit_code, signal, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstored() -> Unstored {
        Unstored { first_seq: 7, lines: 3, reason: "the disk is full".into(), noted: true }
    }

    #[test]
    fn an_exit_code_and_a_signal_are_recorded_as_the_runner_saw_them() {
        let exited = final_state(Ended { exit: ExitKind::Code(3), stop: None, error: None }, None);
        assert_eq!((exited.status, exited.exit_code, exited.signal), (RunStatus::Failed, Some(3), None));
        let killed =
            final_state(Ended { exit: ExitKind::Signal(9), stop: Some(StopReason::TimedOut), error: None }, None);
        assert_eq!((killed.status, killed.exit_code, killed.signal), (RunStatus::TimedOut, None, Some(9)));
        let not_started = final_state(Ended::not_started("cannot start `nope`".into()), None);
        assert_eq!((not_started.status, not_started.exit_code), (RunStatus::Failed, None));
        assert_eq!(not_started.error.as_deref(), Some("cannot start `nope`"));
    }

    #[test]
    fn a_run_with_unstored_lines_never_succeeds_and_says_why() {
        let clean = final_state(Ended { exit: ExitKind::Code(0), stop: None, error: None }, Some(&unstored()));
        assert_eq!(clean.status, RunStatus::Failed);
        assert_eq!(clean.exit_code, Some(0));
        assert_eq!(clean.error, Some(unstored().error()));
        // A cancel does not hide the loss either, and the runner's own error stays in front.
        let cancelled = Ended {
            exit: ExitKind::Signal(15),
            stop: Some(StopReason::Cancelled),
            error: Some("cannot wait for the process".into()),
        };
        let cancelled = final_state(cancelled, Some(&unstored()));
        assert_eq!(cancelled.status, RunStatus::Failed);
        assert_eq!(cancelled.error, Some(format!("cannot wait for the process; {}", unstored().error())));
    }
}
