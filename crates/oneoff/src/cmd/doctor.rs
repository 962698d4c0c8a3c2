//! `oneoff doctor`: hands the arguments to the doctor module.

use std::process::ExitCode;

use crate::cli::DoctorArgs;

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    crate::doctor::run(args).await
}
