//! `oneoff doctor URL [URL ...]`: find the hop that breaks live logs.
//!
//! The URLs are the same deployment as reached at each hop, outermost first (public name,
//! load balancer, ingress, pod). Facts are gathered for every URL at once ([`probe`]),
//! then judged by pure checks ([`checks`]), then printed as a table and a verdict, or as
//! JSON. The exit status is 0 only when every check passes on every hop.

pub mod checks;
pub mod facts;
pub mod probe;

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::output;
use checks::{Check, Outcome, Verdict, CHECK_NAMES};
use facts::HopFacts;

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    hops: &'a [HopFacts],
    checks: &'a [Vec<Check>],
    verdicts: &'a [Verdict],
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    // `/debug/echo` answers administrators only: send the CLI's API token, unless the
    // caller gave an identity of their own with `-H`.
    let mut headers = args.headers.clone();
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization")) {
        if let Some(token) = crate::cmd::token::load() {
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
    }
    let options = probe::Options {
        headers,
        origin: args.origin.clone(),
        run: args.run.map(|run| run.0),
        idle: args.idle,
        idle_max_s: args.idle_max,
    };
    if !args.json {
        output::stderr_line(&format!(
            "probing {} URL(s){}…",
            args.urls.len(),
            if args.idle { " (with --idle: this takes minutes)" } else { "" }
        ));
    }
    let hops: Vec<HopFacts> =
        futures_util::future::join_all(args.urls.iter().map(|url| probe::gather(url, &options))).await;
    let checks: Vec<Vec<Check>> = hops.iter().map(checks::evaluate).collect();
    let verdicts = checks::verdicts(&args.urls, &checks);
    let ok = checks.iter().flatten().all(|check| check.outcome != Outcome::Fail);
    if args.json {
        output::json(&Report { ok, hops: &hops, checks: &checks, verdicts: &verdicts })?;
    } else {
        output::stdout(&render(&args.urls, &checks, &verdicts, args.idle))?;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn render(urls: &[String], checks: &[Vec<Check>], verdicts: &[Verdict], idle: bool) -> String {
    let shown: Vec<usize> = (0..CHECK_NAMES.len()).filter(|index| idle || CHECK_NAMES[*index] != "idle").collect();
    let mut headers = vec!["URL"];
    headers.extend(shown.iter().map(|index| CHECK_NAMES[*index]));
    let rows: Vec<Vec<String>> = urls
        .iter()
        .zip(checks)
        .map(|(url, hop)| {
            let mut row = vec![url.clone()];
            row.extend(shown.iter().map(|index| {
                let check = &hop[*index];
                let mark = match check.outcome {
                    Outcome::Pass => "ok",
                    Outcome::Fail => "FAIL",
                    Outcome::Skip => "--",
                };
                if check.summary == "-" {
                    mark.to_string()
                } else {
                    format!("{mark} {}", check.summary)
                }
            }));
            row
        })
        .collect();
    let mut text = output::table(&headers, &rows);
    text.push('\n');
    if verdicts.is_empty() {
        text.push_str("verdict: every check passes on every hop; live logs work through this chain\n");
    }
    for verdict in verdicts {
        text.push_str(&format!(
            "verdict: {} breaks at hop {} ({}): {}\n  fix: {}\n",
            verdict.check, verdict.hop, verdict.url, verdict.cause, verdict.remedy
        ));
    }
    let mut notes: Vec<String> = checks
        .iter()
        .flatten()
        .filter(|check| check.outcome == Outcome::Skip)
        .filter_map(|check| check.cause.as_ref().map(|cause| format!("note: {} not checked: {cause}\n", check.name)))
        .collect();
    notes.dedup();
    notes.iter().for_each(|note| text.push_str(note));
    text
}
