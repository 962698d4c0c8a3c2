//! `oneoff check-config FILE`: validates a config file offline, with the same code the
//! server uses at startup, and reports every problem as `file:line:col: message`; then,
//! as the server does at start, warns about what this host lacks (a program, a workdir)
//! as `file:line:col: warning: message`, which fails the check only with `--strict`.
//!
//! It reads the environment as `oneoff serve` does (the `ONEOFF_<SECTION>__<KEY>` settings
//! and `ONEOFF_LISTEN`, `ONEOFF_DATA_DIR`, `ONEOFF_DATABASE`, `ONEOFF_REPLICA`,
//! `ONEOFF_LOG_FORMAT`), so that a check run with the service's environment checks what the
//! server will run, and says which settings came from it; `--no-env` checks the file alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use oneoff_core::{Config, ConfigError, Given, Overrides};

use crate::cli::{CheckConfigArgs, BASE_PATH_ENV, DATABASE_ENV, DATA_DIR_ENV, LISTEN_ENV, LOG_FORMAT_ENV, REPLICA_ENV};
use crate::output::{self, stderr_line};

pub fn run(args: &CheckConfigArgs) -> ExitCode {
    let shown = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(error) => {
            stderr_line(&format!("oneoff: cannot read {shown}: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let overrides = if args.no_env { Overrides::default() } else { environment_overrides() };
    let config = match Config::from_toml(&shown, &text, base_dir(&args.file), &overrides) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors.0 {
                stderr_line(&error.to_string());
            }
            return ExitCode::FAILURE;
        }
    };
    // The host's facts, as the server checks them at start: this process's PATH and
    // directory stand in for the server's.
    let warnings = oneoff_server::host_warnings(&config);
    for warning in &warnings {
        stderr_line(&warning_line(warning));
    }
    for (variable, setting) in overrides.environment.settings_given() {
        let _ = output::stdout_line(&format!("{variable} sets {setting}"));
    }
    let count = config.catalog.jobs().len();
    let noun = if count == 1 { "job" } else { "jobs" };
    let verdict = match warnings.len() {
        0 => format!("{shown}: ok ({count} {noun})"),
        1 => format!("{shown}: ok ({count} {noun}), 1 warning about this host"),
        many => format!("{shown}: ok ({count} {noun}), {many} warnings about this host"),
    };
    // A closed stdout cannot change the verdict, which the exit code carries.
    let _ = output::stdout_line(&verdict);
    if args.strict && !warnings.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// What `oneoff serve` would take from the environment (without its flags): an empty
/// variable counts as unset, as there.
fn environment_overrides() -> Overrides {
    let variable = |name: &str| {
        std::env::var(name).ok().filter(|value| !value.trim().is_empty()).map(|value| Given::new(value, name))
    };
    Overrides {
        listen: variable(LISTEN_ENV),
        data_dir: std::env::var_os(DATA_DIR_ENV).filter(|dir| !dir.is_empty()).map(PathBuf::from),
        database: variable(DATABASE_ENV),
        replica: variable(REPLICA_ENV),
        log_format: variable(LOG_FORMAT_ENV),
        base_path: variable(BASE_PATH_ENV),
        environment: crate::cli::process_environment(),
    }
}

/// `file:line:col: warning: message`, so an editor jumps to it and a reader tells it from an error.
fn warning_line(warning: &ConfigError) -> String {
    let place = match warning.position {
        Some((line, column)) => format!("{}:{line}:{column}", warning.file),
        None => warning.file.clone(),
    };
    format!("{place}: warning: {}", warning.message)
}

/// Relative paths in the file are relative to its directory, as when the server loads it.
fn base_dir(file: &Path) -> &Path {
    file.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dir_of_a_bare_file_name_is_the_current_directory() {
        assert_eq!(base_dir(Path::new("oneoff.toml")), Path::new("."));
        assert_eq!(base_dir(Path::new("etc/oneoff.toml")), Path::new("etc"));
        assert_eq!(base_dir(Path::new("/etc/oneoff.toml")), Path::new("/etc"));
    }
}
