//! `oneoff serve`: runs the oneoff server.

pub async fn run(args: crate::cli::ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    oneoff_server::cli_serve(args.config, args.listen, args.data_dir).await
}
