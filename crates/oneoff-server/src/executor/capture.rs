//! Capturing a child's output: pipes to lines, lines to numbered entries in the store.
//!
//! One capture task per pipe reads as fast as the pipe delivers, whatever the viewers do,
//! and cuts lines with [`LineSplitter`]; one writer task per run numbers the lines, masks
//! secret values, and appends them to the store in batches (one transaction per batch),
//! then tells the hub. Both channels are bounded, so memory stays bounded even when the
//! disk is slower than the job.

use std::sync::Arc;
use std::time::Duration;

use oneoff_core::{LineSplitter, LogEntry, LogStream, RunId};
use oneoff_store::Store;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clock::now_us;
use crate::hub::LogHub;

/// Lines read together from one pipe.
#[derive(Debug)]
pub struct Lines {
    pub stream: LogStream,
    pub ts_us: i64,
    pub lines: Vec<Vec<u8>>,
}

impl Lines {
    pub fn system(text: impl Into<String>) -> Lines {
        Lines { stream: LogStream::System, ts_us: now_us(), lines: vec![text.into().into_bytes()] }
    }
}

/// Chunks of lines in flight between capture and writer; each chunk holds at most one read.
pub const CHANNEL_CHUNKS: usize = 256;
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Entries per store transaction, and the longest a line waits before it is written.
const BATCH_ENTRIES: usize = 8192;
const BATCH_DELAY: Duration = Duration::from_millis(5);

/// Reads one pipe to its end. A partial line is sent after `partial_flush` of quiet.
pub async fn capture(
    mut pipe: impl AsyncRead + Unpin,
    stream: LogStream,
    max_line_bytes: usize,
    partial_flush: Duration,
    sink: mpsc::Sender<Lines>,
) {
    let mut splitter = LineSplitter::new(max_line_bytes);
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    loop {
        let read = tokio::select! {
            read = pipe.read(&mut buffer) => read,
            () = tokio::time::sleep(partial_flush), if splitter.has_partial() => {
                if let Some(partial) = splitter.take_partial() {
                    if sink.send(Lines { stream, ts_us: now_us(), lines: vec![partial] }).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        let count = match read {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let _ = sink.send(Lines::system(format!("reading {} failed: {error}", stream.as_str()))).await;
                break;
            }
        };
        let mut lines = Vec::new();
        splitter.push(&buffer[..count], |line| lines.push(line));
        if !lines.is_empty() && sink.send(Lines { stream, ts_us: now_us(), lines }).await.is_err() {
            return;
        }
    }
    if let Some(partial) = splitter.take_partial() {
        let _ = sink.send(Lines { stream, ts_us: now_us(), lines: vec![partial] }).await;
    }
}

/// Numbers, masks and stores lines until every sender is gone; returns the last sequence number.
pub async fn write_log(
    run: RunId,
    store: Store,
    hub: LogHub,
    mut last_seq: u64,
    secrets: Vec<String>,
    mut incoming: mpsc::Receiver<Lines>,
) -> u64 {
    let mut batch: Vec<LogEntry> = Vec::new();
    while let Some(first) = incoming.recv().await {
        push_lines(&mut batch, &mut last_seq, first, &secrets);
        let deadline = Instant::now() + BATCH_DELAY;
        while batch.len() < BATCH_ENTRIES {
            tokio::select! {
                biased;
                more = incoming.recv() => match more {
                    Some(lines) => push_lines(&mut batch, &mut last_seq, lines, &secrets),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if store_batch(run, &store, &batch).await {
            hub.publish(run, Arc::from(std::mem::take(&mut batch)));
        } else {
            // Keep the stored sequence gapless: the next lines reuse the lost numbers.
            last_seq -= batch.len() as u64;
            batch.clear();
        }
    }
    last_seq
}

fn push_lines(batch: &mut Vec<LogEntry>, last_seq: &mut u64, lines: Lines, secrets: &[String]) {
    for bytes in lines.lines {
        *last_seq += 1;
        let bytes = mask_secrets(bytes, secrets);
        batch.push(LogEntry { seq: *last_seq, ts_us: lines.ts_us, stream: lines.stream, bytes });
    }
}

/// Retries for a while: a line the job wrote is only dropped when the store stays broken.
/// Returns whether the batch is stored.
async fn store_batch(run: RunId, store: &Store, batch: &[LogEntry]) -> bool {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=10 {
        match store.append_log(run, batch).await {
            Ok(()) => return true,
            Err(error) => {
                tracing::error!(run = %run, attempt, %error, entries = batch.len(), "cannot store log lines; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(run = %run, entries = batch.len(), "log lines dropped: the store keeps failing");
    false
}

const MASK: &[u8] = b"********";

/// Replaces every occurrence of a secret parameter's value.
pub fn mask_secrets(bytes: Vec<u8>, secrets: &[String]) -> Vec<u8> {
    let mut bytes = bytes;
    for secret in secrets.iter().map(String::as_bytes).filter(|secret| !secret.is_empty()) {
        if bytes.windows(secret.len()).all(|window| window != secret) {
            continue;
        }
        let mut masked = Vec::with_capacity(bytes.len());
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            if rest.starts_with(secret) {
                masked.extend_from_slice(MASK);
                rest = &rest[secret.len()..];
            } else {
                masked.push(rest[0]);
                rest = &rest[1..];
            }
        }
        bytes = masked;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_of_every_secret() {
        let secrets = vec!["hunter2".to_string(), String::new()];
        assert_eq!(
            mask_secrets(b"pw=hunter2 again hunter2".to_vec(), &secrets),
            b"pw=******** again ********".to_vec()
        );
        assert_eq!(mask_secrets(b"nothing here".to_vec(), &secrets), b"nothing here".to_vec());
    }
}
