//! `oneoff logs RUN`: prints a run's log like `kubectl logs`; with `--follow`, keeps
//! streaming until the run ends; with `--tail N`, starts with the last N entries.

use std::process::ExitCode;

use crate::cli::LogsArgs;
use crate::cmd::client;
use crate::follow::{self, Format, Printer, Start};

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.client);
    let format = if args.client.json { Format::Json } else { Format::Text { timestamps: args.timestamps } };
    let mut printer = Printer::stdio(format);
    let start = match args.tail {
        Some(tail) => Start::Tail(tail),
        None => Start::After(args.after),
    };
    follow::print_log(&client, args.run.0, start, args.follow, &mut printer).await?;
    Ok(ExitCode::SUCCESS)
}
