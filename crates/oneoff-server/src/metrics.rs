//! What this replica measures for Prometheus, and the text `/metrics` serves.
//!
//! Two sorts of values. Events are measured where they happen, into [`Metrics`]: a run
//! reaching its final state, how long it waited and ran, each group commit of the log writer
//! (one histogram observe and two atomic adds per commit, never a lock per line). Everything
//! else is read when Prometheus scrapes ([`Snapshot`]): the gauges, the store's error counts,
//! the transports' counters. The queue is the database's, shared by every replica, so its
//! length by job is read from the store at most every [`QUEUE_READ_PERIOD`] and cached.
//!
//! Label values are bounded by the program or by the catalog, never by a request: a `job`
//! label is a job this process has had in its catalog since it started (a reload adds the new
//! jobs' series; a removed job's series stay, with their totals, until the server restarts, so
//! no counter goes backwards). A run of a job this process never had in its catalog (one left
//! queued by an earlier version of the catalog, say) is counted under [`OTHER_JOB`].

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use oneoff_core::{Catalog, RunStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The `job` label of runs of a job not in this process's catalogs (see the module's doc).
pub const OTHER_JOB: &str = "_not_in_catalog";

/// The statuses a run ends with: the `status` values of `oneoff_runs_total`.
pub const FINAL_STATUSES: [RunStatus; 5] =
    [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled, RunStatus::TimedOut, RunStatus::Lost];

/// How long a read of the queue's length serves scrapes: a scrape every second costs one
/// small indexed query every few seconds, whatever the size of the database.
pub const QUEUE_READ_PERIOD: Duration = Duration::from_secs(5);

/// Run durations: from a tenth of a second to six hours.
const RUN_SECONDS: [f64; 15] =
    [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0];

/// Queue waits: from 10 ms (claimed at once) to an hour.
const WAIT_SECONDS: [f64; 12] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

type JobLabels = [(&'static str, String); 1];
type JobStatusLabels = [(&'static str, String); 2];
type HistogramMaker = fn() -> Histogram;
/// When the queue's length was read, and what it was by job.
type QueueRead = (Instant, Vec<(String, u64)>);

/// The events this replica measured since it started.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The jobs that may be a `job` label: every job of a catalog in force since the start.
    known_jobs: RwLock<HashSet<String>>,
    runs: Family<JobStatusLabels, Counter>,
    run_duration: Family<JobLabels, Histogram, HistogramMaker>,
    queue_wait: Family<JobLabels, Histogram, HistogramMaker>,
    log_lines: Counter,
    log_bytes: Counter,
    log_commit: Histogram,
    /// The last read of the queue's length by job, and when it was read.
    queued: Mutex<Option<QueueRead>>,
    /// Runs running here now, by job label (changed once per start and end of a run).
    running: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn new(catalog: &Catalog) -> Metrics {
        let mut registry = Registry::default();
        let runs = Family::<JobStatusLabels, Counter>::default();
        registry.register(
            "oneoff_runs",
            "Runs that reached a final state on this replica, by job and status (succeeded, failed, \
             cancelled, timed_out, lost)",
            runs.clone(),
        );
        let run_duration: Family<JobLabels, Histogram, HistogramMaker> =
            Family::new_with_constructor(|| Histogram::new(RUN_SECONDS));
        registry.register_with_unit(
            "oneoff_run_duration",
            "How long runs that ended on this replica ran, from their start to their final state, by job",
            Unit::Seconds,
            run_duration.clone(),
        );
        let queue_wait: Family<JobLabels, Histogram, HistogramMaker> =
            Family::new_with_constructor(|| Histogram::new(WAIT_SECONDS));
        registry.register_with_unit(
            "oneoff_run_queue_wait",
            "How long runs this replica started had waited in the queue, by job",
            Unit::Seconds,
            queue_wait.clone(),
        );
        let log_lines = Counter::default();
        registry.register(
            "oneoff_log_lines_stored",
            "Log entries (lines, and pieces of lines longer than max_line_bytes) this replica stored",
            log_lines.clone(),
        );
        let log_bytes = Counter::default();
        registry.register("oneoff_log_bytes_stored", "Bytes of log text this replica stored", log_bytes.clone());
        let log_commit = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "oneoff_log_commit",
            "How long the log writer's group commits took on this replica (one transaction for the \
             lines of every live run); failed commits are not counted here but in oneoff_store_errors_total",
            Unit::Seconds,
            log_commit.clone(),
        );
        let metrics = Metrics {
            registry,
            known_jobs: RwLock::default(),
            runs,
            run_duration,
            queue_wait,
            log_lines,
            log_bytes,
            log_commit,
            queued: Mutex::new(None),
            running: Mutex::default(),
        };
        metrics.catalog_changed(catalog);
        metrics
    }

    /// A catalog came into force: its jobs get their series, at zero, so that an alert on an
    /// increase sees the first run too. The series of jobs it no longer has stay.
    pub fn catalog_changed(&self, catalog: &Catalog) {
        let mut known = self.known_jobs.write().unwrap_or_else(PoisonError::into_inner);
        for job in catalog.jobs() {
            let name = job.name.to_string();
            for status in FINAL_STATUSES {
                let _ = self.runs.get_or_create(&[("job", name.clone()), ("status", status.as_str().to_string())]);
            }
            let _ = self.run_duration.get_or_create(&[("job", name.clone())]);
            let _ = self.queue_wait.get_or_create(&[("job", name.clone())]);
            known.insert(name);
        }
    }

    /// The `job` label for `job`: its name if a catalog of this process had it.
    pub fn job_label(&self, job: &str) -> String {
        let known = self.known_jobs.read().unwrap_or_else(PoisonError::into_inner);
        if known.contains(job) {
            job.to_string()
        } else {
            OTHER_JOB.to_string()
        }
    }

    /// A run reached its final state here; `ran` is how long it ran, if it started.
    pub fn run_finished(&self, job: &str, status: RunStatus, ran: Option<Duration>) {
        let job = self.job_label(job);
        if let Some(ran) = ran {
            self.run_duration.get_or_create(&[("job", job.clone())]).observe(ran.as_secs_f64());
        }
        self.runs.get_or_create(&[("job", job), ("status", status.as_str().to_string())]).inc();
    }

    /// This replica started a run that had waited `waited` in the queue.
    pub fn run_started(&self, job: &str, waited: Duration) {
        self.queue_wait.get_or_create(&[("job", self.job_label(job))]).observe(waited.as_secs_f64());
    }

    /// A group commit stored `lines` entries of `bytes` bytes in `took`.
    pub fn log_committed(&self, lines: u64, bytes: u64, took: Duration) {
        self.log_lines.inc_by(lines);
        self.log_bytes.inc_by(bytes);
        self.log_commit.observe(took.as_secs_f64());
    }

    /// The queue's length by job as last read, if that read is recent enough to serve.
    pub fn cached_queue(&self, now: Instant) -> Option<Vec<(String, u64)>> {
        let cached = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        let (read_at, queued) = cached.as_ref()?;
        (now.duration_since(*read_at) < QUEUE_READ_PERIOD).then(|| queued.clone())
    }

    /// A run began (`+1`) or ended (`-1`) on this replica.
    pub fn running_changed(&self, job: &str, up: bool) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let count = running.entry(self.job_label(job)).or_insert(0);
        *count = if up { *count + 1 } else { count.saturating_sub(1) };
    }

    /// Runs running on this replica by job label; every job of `catalog` is there, at 0 too.
    pub fn running_by_job(&self, catalog: &Catalog) -> Vec<(String, u64)> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for job in catalog.jobs() {
            running.entry(job.name.to_string()).or_insert(0);
        }
        running.into_iter().filter(|(job, count)| *count > 0 || job != OTHER_JOB).collect()
    }

    /// The last read of the queue's length, however old; empty before the first.
    pub fn last_queue(&self) -> Vec<(String, u64)> {
        let cached = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        cached.as_ref().map(|(_, queued)| queued.clone()).unwrap_or_default()
    }

    pub fn cache_queue(&self, read_at: Instant, queued: Vec<(String, u64)>) {
        *self.queued.lock().unwrap_or_else(PoisonError::into_inner) = Some((read_at, queued));
    }

    /// The Prometheus text (version 0.0.4) of these metrics followed by `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(snapshot));
        prometheus_client::encoding::prometheus_text::encode(&mut text, &scraped)?;
        Ok(text)
    }
}

/// One family of values read at scrape time.
#[derive(Debug)]
pub struct ScrapedFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Each series: its labels and its value.
    pub series: Vec<(Vec<(&'static str, String)>, u64)>,
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Values read when Prometheus scrapes, as families.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub families: Vec<ScrapedFamily>,
}

impl Snapshot {
    /// Adds a family; a counter's `name` is without its `_total`, which the text adds.
    pub fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut ScrapedFamily {
        self.families.push(ScrapedFamily { name, help, kind, series: Vec::new() });
        let last = self.families.len() - 1;
        &mut self.families[last]
    }
}

impl ScrapedFamily {
    /// Adds one series; `labels` empty for a family of one value.
    pub fn series(&mut self, labels: &[(&'static str, &str)], value: u64) -> &mut ScrapedFamily {
        self.series.push((labels.iter().map(|(key, value)| (*key, value.to_string())).collect(), value));
        self
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let metric_type = match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            // Ended with a full stop, as the registry ends the help of the measured metrics.
            let help = format!("{}.", family.help.trim_end_matches('.'));
            let mut descriptor = encoder.encode_descriptor(family.name, &help, None, metric_type)?;
            for (labels, value) in &family.series {
                let series = descriptor.encode_family(labels)?;
                match family.kind {
                    Kind::Counter => ConstCounter::new(*value).encode(series)?,
                    Kind::Gauge => ConstGauge::new(i64::try_from(*value).unwrap_or(i64::MAX)).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

/// How long a run has run, from the start the store recorded to now.
pub fn ran_since(started_at_us: Option<i64>) -> Option<Duration> {
    let started_at_us = started_at_us?;
    u64::try_from(crate::clock::now_us() - started_at_us).ok().map(Duration::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(names: &[&str]) -> Catalog {
        let jobs: String =
            names.iter().map(|name| format!("[[job]]\nname = \"{name}\"\ncommand = [\"true\"]\n")).collect();
        oneoff_core::Config::from_toml("t.toml", &jobs, std::path::Path::new("/"), &Default::default())
            .expect("a valid catalog")
            .catalog
    }

    #[test]
    fn a_read_of_the_queue_serves_scrapes_for_the_read_period_only() {
        let metrics = Metrics::new(&catalog(&["a"]));
        let read_at = Instant::now();
        assert_eq!(metrics.cached_queue(read_at), None);
        metrics.cache_queue(read_at, vec![("a".into(), 3)]);
        assert_eq!(metrics.cached_queue(read_at + QUEUE_READ_PERIOD / 2), Some(vec![("a".into(), 3)]));
        assert_eq!(metrics.cached_queue(read_at + QUEUE_READ_PERIOD), None);
        assert_eq!(metrics.last_queue(), vec![("a".into(), 3)], "kept for a failed read");
    }

    #[test]
    fn labels_are_the_catalogs_jobs_and_a_removed_job_keeps_its_series() {
        let metrics = Metrics::new(&catalog(&["a", "b"]));
        metrics.run_finished("a", RunStatus::Succeeded, Some(Duration::from_millis(300)));
        metrics.run_finished("never\"}", RunStatus::Failed, None);
        metrics.catalog_changed(&catalog(&["b", "c"]));
        metrics.run_finished("a", RunStatus::Failed, None);
        let text = metrics.render(Snapshot::default()).expect("text");
        assert!(text.contains("oneoff_runs_total{job=\"a\",status=\"succeeded\"} 1\n"), "{text}");
        assert!(text.contains("oneoff_runs_total{job=\"a\",status=\"failed\"} 1\n"), "{text}");
        assert!(text.contains("oneoff_runs_total{job=\"c\",status=\"lost\"} 0\n"), "{text}");
        assert!(text.contains(&format!("oneoff_runs_total{{job=\"{OTHER_JOB}\",status=\"failed\"}} 1\n")), "{text}");
        assert!(!text.contains("never"), "{text}");
        assert!(text.contains("oneoff_run_duration_seconds_count{job=\"a\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE oneoff_log_commit_seconds histogram\n"), "{text}");
    }
}
