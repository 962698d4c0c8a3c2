//! What the catalog needs from this host, checked: each job's program exists and can be
//! executed, each `workdir` is a directory.
//!
//! Core validates the file without IO and lists these needs ([`oneoff_core::HostNeed`]); this
//! is the IO half, shared by `oneoff check-config` and the server's start. Its findings are
//! warnings, not errors: the host is not the file (a tool may be installed after the config
//! is checked, a config may be checked on another machine), and one missing tool must not keep
//! every other job from running. A run of such a job fails with the same reason.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oneoff_core::{Config, ConfigError, Need};

/// One warning per need this host does not meet, at the place the file states it.
/// `search_path` is the `PATH` jobs inherit (the server's), `cwd` where a relative program
/// of a job without `workdir` is looked up (the server's working directory).
pub fn host_warnings(config: &Config, search_path: Option<&str>, cwd: &Path) -> Vec<ConfigError> {
    let mut warnings = Vec::new();
    for need in &config.host_needs {
        let problem = match &need.need {
            Need::Program { program, search_path: job_path, workdir } => {
                let path = job_path.as_deref().or(search_path);
                program_problem(program, path, workdir.as_deref().unwrap_or(cwd))
                    .map(|problem| format!("job `{}`: {problem}", need.job))
            }
            Need::Directory(dir) => directory_problem(dir).map(|problem| format!("job `{}`: {problem}", need.job)),
        };
        warnings.extend(problem.map(|message| need.problem(message)));
    }
    warnings
}

/// Why `program` cannot be started here, if it cannot; `dir` resolves a relative path.
pub fn program_problem(program: &str, search_path: Option<&str>, dir: &Path) -> Option<String> {
    if program.contains('/') {
        let path = dir.join(program);
        return match executable(&path) {
            Ok(()) => None,
            Err(why) => Some(format!("program `{program}` {why} on this host")),
        };
    }
    let directories: Vec<&str> = search_path.unwrap_or("").split(':').filter(|entry| !entry.is_empty()).collect();
    let mut not_executable = None;
    for directory in &directories {
        let candidate = Path::new(directory).join(program);
        match executable(&candidate) {
            Ok(()) => return None,
            Err(Why::NotExecutable) => not_executable = not_executable.or(Some(candidate)),
            Err(_) => {}
        }
    }
    let searched = if directories.is_empty() { "(PATH is empty)".to_string() } else { directories.join(":") };
    Some(match not_executable {
        Some(found) => format!("program `{program}` is {} but not executable (chmod +x it)", found.display()),
        None => format!(
            "program `{program}` is not found in PATH ({searched}) on this host: install it, or write its absolute path"
        ),
    })
}

fn directory_problem(dir: &PathBuf) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => None,
        Ok(_) => Some(format!("workdir {} is not a directory", dir.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("workdir {} does not exist on this host", dir.display()))
        }
        Err(error) => Some(format!("workdir {} cannot be read: {error}", dir.display())),
    }
}

enum Why {
    Missing,
    NotAFile,
    NotExecutable,
    Unreadable(std::io::Error),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Missing => f.write_str("does not exist"),
            Why::NotAFile => f.write_str("is not a file"),
            Why::NotExecutable => f.write_str("is not executable (chmod +x it)"),
            Why::Unreadable(error) => write!(f, "cannot be checked ({error})"),
        }
    }
}

fn executable(path: &Path) -> Result<(), Why> {
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => Err(Why::NotAFile),
        Ok(metadata) if metadata.permissions().mode() & 0o111 == 0 => Err(Why::NotExecutable),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(Why::Missing),
        Err(error) => Err(Why::Unreadable(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_by_path_or_in_the_search_path() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).unwrap();
        let here = dir.path().to_str().unwrap();
        assert_eq!(program_problem("sh", Some("/nonexistent:/bin:/usr/bin"), dir.path()), None);
        assert_eq!(program_problem("/bin/sh", None, dir.path()), None);
        assert_eq!(
            program_problem("/nonexistent/prog", None, dir.path()).unwrap(),
            "program `/nonexistent/prog` does not exist on this host"
        );
        assert_eq!(
            program_problem("no-such-tool-1b2c", Some("/nonexistent:/bin"), dir.path()).unwrap(),
            "program `no-such-tool-1b2c` is not found in PATH (/nonexistent:/bin) on this host: install it, or write its absolute path"
        );
        assert!(program_problem("sh", None, dir.path()).unwrap().contains("(PATH is empty)"));
        assert_eq!(
            program_problem("./tool", None, dir.path()).unwrap(),
            "program `./tool` is not executable (chmod +x it) on this host"
        );
        assert_eq!(
            program_problem("tool", Some(here), dir.path()).unwrap(),
            format!("program `tool` is {} but not executable (chmod +x it)", tool.display())
        );
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(program_problem("./tool", None, dir.path()), None, "relative to the job's directory");
        assert_eq!(program_problem("tool", Some(here), Path::new("/")), None);
        assert!(program_problem(here, None, dir.path()).unwrap().ends_with("is not a file on this host"));
    }

    #[test]
    fn a_workdir_must_be_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(directory_problem(&dir.path().to_path_buf()), None);
        assert!(directory_problem(&file).unwrap().ends_with("is not a directory"));
        assert!(directory_problem(&dir.path().join("gone")).unwrap().ends_with("does not exist on this host"));
    }
}
