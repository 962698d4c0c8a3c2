//! The command line as clap derive types: every subcommand, flag and environment variable.
//!
//! Nothing here does any work; `cmd` turns these values into requests and output.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use oneoff_core::{Given, RunId, RunStatus};

/// The server the client commands talk to when neither `--server` nor `ONEOFF_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Debug, Parser)]
#[command(
    name = "oneoff",
    version,
    about = "Run predefined one-off jobs and follow their logs",
    after_help = EXIT_STATUS_HELP,
    after_long_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
    /// The global flags as the commands use them (filled by [`Cli::parse_noting_sources`]).
    #[arg(skip)]
    pub client: ClientOpts,
}

/// The exit codes, for `--help` and the man page (docs/cli.md says the same).
const EXIT_STATUS_HELP: &str = "Exit status: 0 done; 1 the operation failed (the network, the server, a run \
that could not be cancelled); 2 a usage error or a request the server refused as wrong (an unknown job or \
run, a bad parameter, a bad flag); `run --follow` exits with the job's own code, and 125 when oneoff itself \
failed; `doctor` and `migrate-store` document their own.";

/// Flags every command accepts, before or after the subcommand (`oneoff --server URL jobs`
/// or `oneoff jobs --server URL`).
#[derive(Clone, Args)]
pub struct GlobalOpts {
    /// The oneoff server to talk to.
    #[arg(long, global = true, env = "ONEOFF_SERVER", value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is
    /// visible to every local user in `ps`: prefer the variable or the file.
    #[arg(long, global = true, env = TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// How the commands that print data print it: `text` (tables and sentences) or `json`
    /// (the API's JSON; for logs, one entry per line).
    #[arg(short = 'o', long, global = true, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The same as `--output json`.
    #[arg(long, global = true, conflicts_with = "output")]
    pub json: bool,
}

impl std::fmt::Debug for GlobalOpts {
    /// The token is left out: Debug output may reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalOpts").field("server", &self.server).field("output", &self.output).finish_non_exhaustive()
    }
}

/// `--output`: what the commands that print data print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

pub const TOKEN_ENV: &str = "ONEOFF_TOKEN";

impl Cli {
    /// Parses the command line as `Cli::parse` does, and notes which of the server's
    /// settings came from environment variables, so that an error names the variable.
    pub fn parse_noting_sources() -> Cli {
        let matches = Cli::command().get_matches();
        let mut cli = match Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(error) => error.format(&mut Cli::command()).exit(),
        };
        cli.client = ClientOpts::of(&cli.global, &matches);
        if let Some(opts) = cli.command.client_mut() {
            *opts = cli.client.clone();
        }
        match (&mut cli.command, matches.subcommand()) {
            (Command::Serve(args), Some((_, serve))) => args.sources = Sources::of(serve),
            (Command::Token(TokenCommand::Create(args)), Some((_, token))) => {
                if let Some((_, create)) = token.subcommand() {
                    args.sources = Sources::of(create);
                }
            }
            _ => {}
        }
        cli
    }
}

pub const LISTEN_ENV: &str = "ONEOFF_LISTEN";
pub const DATA_DIR_ENV: &str = "ONEOFF_DATA_DIR";
pub const DATABASE_ENV: &str = "ONEOFF_DATABASE";
pub const REPLICA_ENV: &str = "ONEOFF_REPLICA";
pub const LOG_FORMAT_ENV: &str = "ONEOFF_LOG_FORMAT";
pub const BASE_PATH_ENV: &str = "ONEOFF_BASE_PATH";

/// Which arguments of one subcommand took their value from an environment variable.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    from_environment: Vec<String>,
}

impl Sources {
    fn of(matches: &ArgMatches) -> Sources {
        let from_environment = matches
            .ids()
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::EnvVariable))
            .map(|id| id.as_str().to_string())
            .collect();
        Sources { from_environment }
    }

    fn came_from_environment(&self, id: &str) -> bool {
        self.from_environment.iter().any(|known| known == id)
    }

    /// The value of argument `id` (flag `--flag`, variable `variable`) with where it came
    /// from. An empty variable counts as unset, as `ONEOFF_AUDIT_KEY` does.
    pub fn given(&self, id: &str, value: Option<String>, flag: &str, variable: &str) -> Option<Given> {
        let value = value?;
        if !self.came_from_environment(id) {
            return Some(Given::new(value, flag));
        }
        (!value.trim().is_empty()).then(|| Given::new(value, variable))
    }

    /// A path argument: it cannot be wrong, only empty (from an empty variable: unset).
    pub fn path(&self, id: &str, value: Option<PathBuf>) -> Option<PathBuf> {
        value.filter(|path| !(self.came_from_environment(id) && path.as_os_str().is_empty()))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the jobs the server can run.
    Jobs(JobsArgs),
    /// Start a run of a job, and optionally follow its log until it ends.
    Run(RunArgs),
    /// List runs, newest first.
    Runs(RunsArgs),
    /// Show everything known about one run.
    Status(StatusArgs),
    /// Print a run's log.
    Logs(LogsArgs),
    /// Ask the server to stop a run.
    Cancel(CancelArgs),
    /// Validate a config file without starting a server.
    CheckConfig(CheckConfigArgs),
    /// Run the oneoff server.
    Serve(ServeArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Read and verify the audit trail (administrators).
    Audit(AuditArgs),
    /// Show who the server takes you for.
    Whoami(JobsArgs),
    /// List the live replicas sharing the server's store: start, last heartbeat, running runs, draining.
    Replicas(JobsArgs),
    /// Probe a deployment through each hop (outermost first) and name the one that breaks live logs.
    ///
    /// Exit status: 0 every check made and passed, 1 a hop fails, 3 inconclusive (some checks
    /// could not be made, e.g. sign-in required: pass -H or a token).
    Doctor(DoctorArgs),
    /// Copy a whole store (runs, logs, tokens, the audit trail) into a new, empty one and verify the copy.
    ///
    /// Moving up from one machine: `--from sqlite:/var/lib/oneoff/oneoff.db --to postgres://oneoff@db/oneoff`.
    /// Stop the server first. Exit status: 0 copied and verified identical, 1 the copy failed or
    /// differs, 2 refused (a target that is not empty, live runs, the same store twice).
    MigrateStore(MigrateStoreArgs),
    /// Print a shell completion script: `oneoff completions bash > /etc/bash_completion.d/oneoff`.
    Completions(CompletionsArgs),
    /// Print the man page (roff): `oneoff man | man -l -`; with --dir, write one page per command.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write oneoff.1 and a page for each subcommand (oneoff-run.1, ...) into this directory
    /// instead of printing oneoff.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MigrateStoreArgs {
    /// The store to copy: sqlite:PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The new, empty store to copy into (same forms); its schema is created.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Copy even though the source has queued or running runs (a server may still be using it):
    /// they are copied as they are, and the new store's first start marks the running ones lost.
    #[arg(long)]
    pub allow_live: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The same oneoff deployment as reached at each hop, outermost first
    /// (e.g. the public name, the load balancer, the ingress, the pod).
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// A request header sent with every probe, as 'Name: value' (a session cookie, a token); repeatable.
    /// Without an Authorization header, ONEOFF_TOKEN (or the token file) is sent as a Bearer token.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// The Origin a browser would send (default: each URL's own origin).
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
    /// Probe this run's WebSocket instead of /api/v1/probe/ws.
    #[arg(long, value_name = "RUN")]
    pub run: Option<RunId>,
    /// Also measure the longest quiet period each transport survives (takes minutes).
    #[arg(long)]
    pub idle: bool,
    /// The longest quiet period `--idle` tries, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 130)]
    pub idle_max: u64,
    /// `--output json` prints the facts, checks and verdicts as JSON.
    #[arg(skip)]
    pub client: ClientOpts,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once(':').ok_or_else(|| format!("`{text}` is not 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_".contains(&byte)) {
        return Err(format!("`{name}` is not a header name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// What every command that talks to a server takes from the global flags.
#[derive(Clone, Default)]
pub struct ClientOpts {
    pub server: String,
    /// `--token` or `ONEOFF_TOKEN`, and which of the two (see `cmd::token::load`).
    pub token: Option<String>,
    pub token_from_flag: bool,
    /// `--output json` or `--json`.
    pub json: bool,
}

impl std::fmt::Debug for ClientOpts {
    /// The token is left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOpts").field("server", &self.server).field("json", &self.json).finish_non_exhaustive()
    }
}

impl ClientOpts {
    fn of(global: &GlobalOpts, matches: &ArgMatches) -> ClientOpts {
        // A global flag's source is recorded on the subcommand that took it.
        let mut deepest = matches;
        while let Some((_, inner)) = deepest.subcommand() {
            deepest = inner;
        }
        let from_flag = [deepest, matches].iter().any(|m| m.value_source("token") == Some(ValueSource::CommandLine));
        ClientOpts {
            server: global.server.clone(),
            token: global.token.clone(),
            token_from_flag: from_flag,
            json: global.json || global.output == OutputFormat::Json,
        }
    }
}

impl Command {
    /// The client options of a command that talks to a server (or prints data).
    fn client_mut(&mut self) -> Option<&mut ClientOpts> {
        match self {
            Command::Jobs(args) | Command::Whoami(args) | Command::Replicas(args) => Some(&mut args.client),
            Command::Run(args) => Some(&mut args.client),
            Command::Runs(args) => Some(&mut args.client),
            Command::Status(args) => Some(&mut args.client),
            Command::Logs(args) => Some(&mut args.client),
            Command::Cancel(args) => Some(&mut args.client),
            Command::Doctor(args) => Some(&mut args.client),
            Command::Audit(args) => Some(&mut args.client),
            Command::Token(TokenCommand::Create(args)) => Some(&mut args.client),
            Command::Token(TokenCommand::List(args)) => Some(&mut args.client),
            Command::Token(TokenCommand::Revoke(args)) => Some(&mut args.client),
            Command::CheckConfig(_)
            | Command::Serve(_)
            | Command::MigrateStore(_)
            | Command::Completions(_)
            | Command::Man(_) => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[arg(skip)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job to run, as listed by `oneoff jobs`.
    pub job: String,
    /// A parameter, as NAME=VALUE (split at the first `=`); repeat for several.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = crate::cmd::run::parse_param)]
    pub params: Vec<(String, String)>,
    /// Stream the log until the run ends, then exit with the job's exit code.
    #[arg(short, long)]
    pub follow: bool,
    #[arg(skip)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this job.
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
    /// Only runs in this state (queued, running, succeeded, failed, cancelled, timed_out, lost).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<RunStatus>,
    /// Only runs this user requested (as the `by` column shows it, e.g. `anonymous`).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// At most this many runs.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Only runs older than this one (for paging).
    #[arg(long, value_name = "ID")]
    pub before: Option<RunId>,
    #[arg(skip)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run, as `42` or `#42`.
    pub run: RunId,
    #[arg(skip)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run, as `42` or `#42`.
    pub run: RunId,
    /// Keep streaming new lines until the run ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Start after this log sequence number (0 is the beginning).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: u64,
    /// Start with the last N log entries (0: only what follows, with --follow), like
    /// `kubectl logs --tail`. A line stored in pieces (a progress bar) counts one per piece.
    #[arg(long, value_name = "N", conflicts_with = "after")]
    pub tail: Option<u64>,
    /// Prefix each line with the time it was captured.
    #[arg(long)]
    pub timestamps: bool,
    #[arg(skip)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run, as `42` or `#42`.
    pub run: RunId,
    #[arg(skip)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file to validate.
    pub file: PathBuf,
    /// Fail (exit 1) on warnings about this host too (a program or workdir that is missing
    /// here): for a check run on the host that runs the jobs, as the user that runs them.
    #[arg(long)]
    pub strict: bool,
    /// Check the file alone: ignore the ONEOFF_ variables that `serve` would read (as on a
    /// laptop or in CI, where the service's environment is not).
    #[arg(long)]
    pub no_env: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file with the server settings and the job catalog.
    #[arg(long, env = "ONEOFF_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// The address to listen on, as IP:PORT; wins over the config file.
    #[arg(long, env = LISTEN_ENV, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Where runs and logs are kept; wins over the config file.
    #[arg(long, env = DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database: postgres://USER[:PASSWORD]@HOST/DATABASE (shared by several replicas)
    /// or sqlite:PATH; wins over the config file. The password is never shown nor logged.
    #[arg(long, env = DATABASE_ENV, hide_env_values = true, value_name = "URL")]
    pub database: Option<String>,
    /// This replica's name (default: the hostname); wins over the config file.
    #[arg(long, env = REPLICA_ENV, value_name = "NAME")]
    pub replica: Option<String>,
    /// The server log's form on stderr: `text`, or `json` (one object per line, for a log
    /// collector); wins over the config file.
    #[arg(long, env = LOG_FORMAT_ENV, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// The path prefix to serve under, e.g. /oneoff (behind a proxy that passes the path on
    /// unchanged); wins over the config file.
    #[arg(long, env = BASE_PATH_ENV, value_name = "PATH")]
    pub base_path: Option<String>,
    #[arg(skip)]
    pub sources: Sources,
}

impl ServeArgs {
    /// The settings given here, which win over the config file.
    pub fn overrides(&self) -> oneoff_core::Overrides {
        let sources = &self.sources;
        oneoff_core::Overrides {
            listen: sources.given("listen", self.listen.clone(), "--listen", LISTEN_ENV),
            data_dir: sources.path("data_dir", self.data_dir.clone()),
            database: sources.given("database", self.database.clone(), "--database", DATABASE_ENV),
            replica: sources.given("replica", self.replica.clone(), "--replica", REPLICA_ENV),
            log_format: sources.given("log_format", self.log_format.clone(), "--log-format", LOG_FORMAT_ENV),
            base_path: sources.given("base_path", self.base_path.clone(), "--base-path", BASE_PATH_ENV),
            environment: process_environment(),
        }
    }
}

/// This process's `ONEOFF_` variables, for the `ONEOFF_<SECTION>__<KEY>` settings.
pub fn process_environment() -> oneoff_core::Environment {
    oneoff_core::Environment::from_variables(std::env::vars_os())
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create(TokenCreateArgs),
    /// List tokens (yours, or all for an administrator).
    List(JobsArgs),
    /// Revoke a token by id.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// What the token is for, e.g. `ci` or `laptop`.
    #[arg(long)]
    pub name: String,
    /// Lifetime such as 12h, 30d or 1y (default: no expiry).
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// Administrators: whom the token identifies.
    #[arg(long)]
    pub user: Option<String>,
    /// Administrators: a group of the token's user; repeatable.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Create the token directly in the server's database (on the server's host, no server
    /// needed): how the first administrator token is made.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With --config: the server's data directory, if it is not the config file's (as for
    /// `oneoff serve`).
    #[arg(long, env = DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --config: the server's database, if it is not the config file's (as for
    /// `oneoff serve`).
    #[arg(long, env = DATABASE_ENV, hide_env_values = true, value_name = "URL")]
    pub database: Option<String>,
    #[arg(skip)]
    pub client: ClientOpts,
    #[arg(skip)]
    pub sources: Sources,
}

impl TokenCreateArgs {
    /// With `--config`: the settings that win over the file, as for `oneoff serve`.
    pub fn overrides(&self) -> oneoff_core::Overrides {
        let sources = &self.sources;
        oneoff_core::Overrides {
            data_dir: sources.path("data_dir", self.data_dir.clone()),
            database: sources.given("database", self.database.clone(), "--database", DATABASE_ENV),
            environment: process_environment(),
            ..oneoff_core::Overrides::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    pub id: i64,
    #[arg(skip)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// `verify` checks the hash chain instead of listing records.
    #[arg(value_parser = ["verify"])]
    pub verify: Option<String>,
    /// With `verify`: a checkpoint's head hash (from the server log's `audit checkpoint`
    /// lines, or an earlier `verify`); the chain must still hold it.
    #[arg(long, requires = "verify")]
    pub head: Option<String>,
    /// With `--head`: the record count the checkpoint was taken at.
    #[arg(long, requires = "head")]
    pub count: Option<i64>,
    /// With `--head` and `--count`: the checkpoint's MAC, checked against the server's audit key.
    #[arg(long, requires = "count")]
    pub mac: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    /// e.g. run.start, run.cancel, token.create, denied.run, denied.audit.read (docs/API.md)
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long)]
    pub job: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(skip)]
    pub client: ClientOpts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap's own checks: no two arguments with one name or short flag, global ones included.
        Cli::command().debug_assert();
    }
}
