//! `oneoff serve`: runs the oneoff server.

pub async fn run(args: crate::cli::ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let overrides = args.overrides();
    oneoff_server::cli_serve(args.config, overrides).await
}
