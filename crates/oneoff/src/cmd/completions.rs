//! `oneoff completions SHELL` and `oneoff man`: the shell completion scripts and the man
//! pages, generated from the same clap definition that parses the command line (clap's own
//! `clap_complete` and `clap_mangen`), so they cannot drift from it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::output;

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "oneoff", &mut script);
    output::stdout(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    match &args.dir {
        None => {
            output::stdout(&String::from_utf8_lossy(&page(&command, "oneoff")?))?;
        }
        Some(dir) => {
            write_pages(&command, dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One command's page, in roff, titled `title`.
fn page(command: &clap::Command, title: &str) -> anyhow::Result<Vec<u8>> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(title.to_string())
        .render(&mut roff)
        .context("cannot render the man page")?;
    Ok(roff)
}

/// `oneoff.1`, and `oneoff-run.1`, `oneoff-token-create.1`, ... for every subcommand.
fn write_pages(command: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut command = command.clone();
    command.build();
    write_page(&command, "oneoff", dir)
}

fn write_page(command: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    // A subcommand's page is titled with its whole name, as `man oneoff-run` finds it.
    let file = dir.join(format!("{name}.1"));
    std::fs::write(&file, page(command, name)?).with_context(|| format!("cannot write {}", file.display()))?;
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set() && sub.get_name() != "help") {
        write_page(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
