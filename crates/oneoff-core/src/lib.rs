//! The pure domain of oneoff: what a job is, what a run is, and what a log line is.
//!
//! Nothing here does IO, spawns processes, speaks HTTP or SQL, or knows about tokio.
//! Config text goes in as a string and comes out as a validated [`Config`];
//! request parameters go in as [`ParamInput`]s and come out as a [`Launch`] plan.
//! Everything the server does with a child process or a database is built on these types.

pub mod audit;
pub mod auth;
pub mod base_path;
pub mod catalog;
pub mod config;
mod hex;
pub mod lines;
pub mod log;
pub mod mask;
pub mod params;
pub mod run;
pub mod search;
pub mod shell;
pub mod store_url;
pub mod suggest;
pub mod template;

pub use auth::{Access, AccessList, AuthConfig, IdentitySource, Principal};
pub use base_path::BasePath;
pub use bytes::Bytes;
pub use catalog::{Catalog, JobName, JobSpec, Launch};
pub use config::{
    AuditConfig, CgroupSetting, Config, ConfigError, ConfigErrors, DebugConfig, Environment, Given, HostNeed,
    LogFormat, MetricsAccess, Need, Overrides, ServerConfig, StreamConfig,
};
pub use lines::{LineSplitter, Piece};
pub use log::{LogEntry, LogStream};
pub use mask::SecretMasker;
pub use params::{FieldError, ParamInput, ParamKind, ParamSpec, ParamValue, ResolvedParams};
pub use run::{ExitKind, RunId, RunProcesses, RunRecord, RunStatus, StopReason, StoredParam};
pub use store_url::{default_replica_name, PostgresUrl, ReplicaName, StoreUrl};
