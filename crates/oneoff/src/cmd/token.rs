//! `oneoff token create|list|revoke`, `oneoff whoami`, and where the CLI finds its token:
//! `--token`, else `ONEOFF_TOKEN`, else `~/.config/oneoff/token` (refused unless only its
//! owner can read it).

use std::path::PathBuf;
use std::process::ExitCode;

use oneoff_api::v1::CreateToken;

use super::client;
use crate::cli::{ClientOpts, JobsArgs, TokenCommand, TokenCreateArgs};
use crate::output;

/// The token to send, if any. A token file readable by others is ignored with a warning.
pub fn load(opts: &ClientOpts) -> Option<String> {
    if let Some(token) = &opts.token {
        let token = token.trim().to_string();
        return (!token.is_empty()).then_some(token);
    }
    let path = token_file()?;
    let metadata = std::fs::metadata(&path).ok()?;
    use std::os::unix::fs::PermissionsExt;
    if metadata.permissions().mode() & 0o077 != 0 {
        output::stderr_line(&format!("oneoff: ignoring {}: other users can read it (chmod 600 it)", path.display()));
        return None;
    }
    let token = std::fs::read_to_string(&path).ok()?.trim().to_string();
    (!token.is_empty()).then_some(token)
}

/// Where the token [`load`] finds comes from, for messages about a refused one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    Flag,
    Environment,
    File(PathBuf),
    Nowhere,
}

pub fn origin(opts: &ClientOpts) -> TokenOrigin {
    if opts.token.as_ref().is_some_and(|token| !token.trim().is_empty()) {
        return if opts.token_from_flag { TokenOrigin::Flag } else { TokenOrigin::Environment };
    }
    match token_file() {
        Some(path) if load(opts).is_some() => TokenOrigin::File(path),
        _ => TokenOrigin::Nowhere,
    }
}

/// What to do about a 401, given where the token sent (if any) came from.
pub fn sign_in_hint(origin: &TokenOrigin) -> String {
    const MAKE_ONE: &str = "make one on the web UI's Tokens page, or with `oneoff token create` (on the \
         server's host, the first one with `oneoff token create --config FILE`)";
    match origin {
        TokenOrigin::Nowhere => format!(
            "hint: oneoff sent no API token; set ONEOFF_TOKEN, or put the token in ~/.config/oneoff/token \
             (chmod 600); {MAKE_ONE}"
        ),
        TokenOrigin::Flag => {
            format!("hint: the token sent is --token's; replace it with a valid one, or leave it out; {MAKE_ONE}")
        }
        TokenOrigin::Environment => {
            format!("hint: the token sent is ONEOFF_TOKEN's; replace it with a valid one, or unset it; {MAKE_ONE}")
        }
        TokenOrigin::File(path) => {
            format!("hint: the token sent is the one in {}; replace it with a valid one; {MAKE_ONE}", path.display())
        }
    }
}

fn token_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("oneoff").join("token"))
}

pub async fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create(args) => create(args).await,
        TokenCommand::List(args) => {
            let list = client(&args.client).tokens().await?;
            if args.client.json {
                output::json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = list
                .tokens
                .iter()
                .map(|token| {
                    let state = if token.revoked_at.is_some() { "revoked" } else { "active" };
                    vec![
                        token.id.to_string(),
                        token.name.clone(),
                        token.user.clone(),
                        state.to_string(),
                        token.expires_at.as_deref().map(output::short_time).unwrap_or_else(|| "never".into()),
                        token.last_used_at.as_deref().map(output::short_time).unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::stdout(&output::table(&["ID", "NAME", "USER", "STATE", "EXPIRES", "LAST USED"], &rows))?;
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke(args) => {
            let token = client(&args.client).revoke_token(args.id).await?;
            if args.client.json {
                output::json(&token)?;
            } else {
                output::stdout_line(&format!("revoked token {} ({}, user {})", token.id, token.name, token.user))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(args: TokenCreateArgs) -> anyhow::Result<ExitCode> {
    let groups = (!args.groups.is_empty()).then(|| args.groups.clone());
    let created = match &args.config {
        Some(config) => {
            let user = args.user.clone().unwrap_or_else(|| "admin".into());
            oneoff_server::create_token_offline(
                config,
                &args.overrides(),
                &args.name,
                &user,
                args.groups.clone(),
                args.expires.as_deref(),
            )
            .await?
        }
        None => {
            let body = CreateToken {
                name: args.name.clone(),
                expires_in: args.expires.clone(),
                user: args.user.clone(),
                groups,
            };
            client(&args.client).create_token(&body).await?
        }
    };
    if args.client.json {
        output::json(&created)?;
    } else {
        output::stdout_line(&created.token)?;
        output::stderr_line(&format!(
            "token {} ({}) for user {}: shown once, keep it secret; use it with ONEOFF_TOKEN or put it in ~/.config/oneoff/token (chmod 600)",
            created.info.id, created.info.name, created.info.user
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let me = client(&args.client).whoami().await?;
    if args.client.json {
        output::json(&me)?;
    } else {
        let groups = if me.groups.is_empty() { "-".to_string() } else { me.groups.join(", ") };
        output::stdout(&output::key_values(&[
            ("user", me.user.clone()),
            ("groups", groups),
            ("identified by", me.source.clone()),
            ("admin", me.admin.to_string()),
        ]))?;
    }
    Ok(ExitCode::SUCCESS)
}
