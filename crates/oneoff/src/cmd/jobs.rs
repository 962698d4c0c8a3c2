//! `oneoff jobs`: the server's job catalog as a table of names, parameters and descriptions.

use std::process::ExitCode;

use oneoff_api::v1::{Job, JobList};

use crate::cli::JobsArgs;
use crate::cmd::client;
use crate::output::{self, stderr_line};

pub async fn run(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let jobs = client(&args.client).jobs().await?;
    if args.client.json {
        output::json(&JobList { jobs })?;
    } else if jobs.is_empty() {
        stderr_line("no jobs are configured");
    } else {
        output::stdout(&jobs_table(&jobs))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn jobs_table(jobs: &[Job]) -> String {
    let rows: Vec<Vec<String>> =
        jobs.iter().map(|job| vec![job.name.clone(), params_cell(job), job.description.clone()]).collect();
    output::table(&["name", "params", "description"], &rows)
}

/// `name*, count`: every parameter, required ones marked with `*`.
fn params_cell(job: &Job) -> String {
    if job.params.is_empty() {
        return "-".to_string();
    }
    let names: Vec<String> = job
        .params
        .iter()
        .map(|param| if param.required { format!("{}*", param.name) } else { param.name.clone() })
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneoff_api::v1::Param;

    fn param(name: &str, required: bool) -> Param {
        Param {
            name: name.into(),
            kind: "string".into(),
            required,
            default: None,
            description: String::new(),
            env: format!("ONEOFF_PARAM_{}", name.to_uppercase()),
            pattern: None,
            max_length: None,
            min: None,
            max: None,
            choices: None,
        }
    }

    fn job(name: &str, params: Vec<Param>, description: &str) -> Job {
        Job {
            name: name.into(),
            description: description.into(),
            command: vec!["true".into()],
            params,
            timeout_seconds: None,
            max_concurrent: None,
            grace_seconds: 10.0,
            allow_run: None,
            allow_view: None,
        }
    }

    #[test]
    fn required_params_are_starred() {
        let jobs = [
            job("backup", vec![param("name", true), param("count", false)], "Back up a database"),
            job("noop", vec![], ""),
        ];
        assert_eq!(
            jobs_table(&jobs),
            "NAME    PARAMS        DESCRIPTION\n\
             backup  name*, count  Back up a database\n\
             noop    -\n"
        );
    }
}
