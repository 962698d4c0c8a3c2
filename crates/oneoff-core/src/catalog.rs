//! The job catalog: validated job definitions and the plan to launch one with given parameters.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::Access;
use crate::params::{ParamSpec, ParamValue, ResolvedParams};
use crate::run::RunId;
use crate::template::Template;

/// A job's name: lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName(String);

impl JobName {
    pub fn parse(name: &str) -> Result<JobName, String> {
        let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_rest =
            name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if name.len() > 64 || !valid_start || !valid_rest {
            return Err(format!(
                "job name `{name}` must be 1 to 64 characters of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit"
            ));
        }
        Ok(JobName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One job of the catalog, validated: every placeholder names a parameter, no secret is in argv.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: JobName,
    pub description: String,
    /// The argv template as written in the config, for display.
    pub command_text: Vec<String>,
    pub command: Vec<Template>,
    pub env: Vec<(String, Template)>,
    pub workdir: Option<PathBuf>,
    pub params: Vec<ParamSpec>,
    pub timeout: Option<Duration>,
    pub max_concurrent: Option<u32>,
    /// Time between SIGTERM and SIGKILL when the run is cancelled or times out.
    pub grace: Duration,
    /// How much lower than the server's the run's priority is (0–19, as `nice -n`): a chatty job
    /// at 19 leaves the CPU to the server first, so its viewers keep up with it.
    pub nice: u8,
    /// Who may run it and who may see its runs.
    pub access: Access,
}

/// Everything needed to start the child process of one run.
#[derive(Clone)]
pub struct Launch {
    pub argv: Vec<String>,
    /// Added to the server's environment; may hold secret values, so `Debug` shows only names.
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
}

impl fmt::Debug for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("Launch")
            .field("argv", &self.argv)
            .field("env", &env_names)
            .field("workdir", &self.workdir)
            .finish()
    }
}

/// The environment variable through which a parameter reaches the job.
pub fn param_env_name(param: &str) -> String {
    format!("ONEOFF_PARAM_{}", param.to_ascii_uppercase())
}

impl JobSpec {
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|param| param.name == name)
    }

    /// The argv and environment for a run. Each template renders to exactly one argument
    /// (or none, for a lone absent optional placeholder): values are never re-split or
    /// interpreted by a shell, whatever characters they hold.
    pub fn launch(&self, run_id: RunId, params: &ResolvedParams) -> Launch {
        let args: Vec<(String, String)> =
            params.iter().map(|(name, value)| (name.to_string(), value.as_arg())).collect();
        let lookup = |name: &str| args.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let argv = self.command.iter().filter_map(|template| template.render(lookup)).collect();
        let mut env: Vec<(String, String)> =
            self.env.iter().map(|(key, template)| (key.clone(), template.render(lookup).unwrap_or_default())).collect();
        env.push(("ONEOFF_RUN_ID".to_string(), run_id.to_string()));
        env.push(("ONEOFF_JOB".to_string(), self.name.to_string()));
        for (name, value) in params.iter() {
            env.push((param_env_name(name), value.as_arg()));
        }
        Launch { argv, env, workdir: self.workdir.clone() }
    }

    /// The clear values of secret parameters, so output that echoes them can be masked.
    pub fn secret_values<'a>(&self, params: &'a ResolvedParams) -> Vec<&'a str> {
        params
            .iter()
            .filter_map(|(_, value)| match value {
                ParamValue::Secret(secret) if !secret.is_empty() => Some(secret.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// All jobs, in the order of the config file.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    jobs: Vec<JobSpec>,
}

impl Catalog {
    pub fn new(jobs: Vec<JobSpec>) -> Catalog {
        Catalog { jobs }
    }

    pub fn get(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.iter().find(|job| job.name.as_str() == name)
    }

    pub fn jobs(&self) -> &[JobSpec] {
        &self.jobs
    }
}
