//! `oneoff check-config FILE`: validates a config file offline, with the same code the
//! server uses at startup, and reports every problem as `file:line:col: message`.

use std::path::Path;
use std::process::ExitCode;

use oneoff_core::{Config, Overrides};

use crate::cli::CheckConfigArgs;
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
    match Config::from_toml(&shown, &text, base_dir(&args.file), &Overrides::default()) {
        Ok(config) => {
            let count = config.catalog.jobs().len();
            let noun = if count == 1 { "job" } else { "jobs" };
            // A closed stdout cannot change the verdict, which the exit code carries.
            let _ = output::stdout_line(&format!("{shown}: ok ({count} {noun})"));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors.0 {
                stderr_line(&error.to_string());
            }
            ExitCode::FAILURE
        }
    }
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
