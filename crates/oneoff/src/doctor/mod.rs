//! `oneoff doctor URL [URL ...]`: find the hop that breaks live logs.
//!
//! The URLs are the same deployment as reached at each hop, outermost first (public name,
//! load balancer, ingress, pod). Facts are gathered for every URL at once ([`probe`]) from
//! the server's always-on probe surface (`/api/v1/probe/`), then judged by pure checks
//! ([`checks`]), then printed as a table and a verdict, or as JSON.
//!
//! The verdict is green only when every check was made and passed: exit 0. A failing check
//! exits 1 and names its hop; otherwise a check that could not be made (sign-in required,
//! no probe endpoint) makes the run inconclusive: exit 3, with the reason and the remedy.

pub mod checks;
pub mod facts;
pub mod probe;

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::output;
use checks::{Check, Outcome, Unmade, Verdict, CHECK_NAMES, IDLE_NOT_MEASURED};
use facts::HopFacts;

/// Exit status when a check fails at some hop.
pub const EXIT_FAIL: u8 = 1;
/// Exit status when nothing failed but some checks could not be made.
pub const EXIT_INCONCLUSIVE: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Overall {
    Pass,
    Fail,
    Inconclusive,
}

#[derive(Serialize)]
struct Report<'a> {
    /// True only when every check was made and passed.
    ok: bool,
    outcome: Overall,
    exit_code: u8,
    hops: &'a [HopFacts],
    checks: &'a [Vec<Check>],
    verdicts: &'a [Verdict],
    /// The checks that could not be made, by hop and reason.
    unchecked: &'a [Unmade],
    /// What was deliberately not measured (`--idle`).
    not_measured: Vec<&'static str>,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut headers = args.headers.clone();
    // The identity every other command uses, unless -H already gives one.
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization")) {
        if let Some(token) = crate::cmd::token::load(&args.client) {
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
    if !args.client.json {
        output::stderr_line(&format!(
            "probing {} URL(s){}…",
            args.urls.len(),
            if args.idle { " (with --idle: this takes minutes)" } else { "" }
        ));
    }
    let hops: Vec<HopFacts> =
        futures_util::future::join_all(args.urls.iter().map(|url| probe::gather(url, &options))).await;
    let checks: Vec<Vec<Check>> =
        hops.iter().enumerate().map(|(index, hop)| checks::evaluate(hop, index + 1)).collect();
    let verdicts = checks::verdicts(&args.urls, &checks);
    let unchecked = checks::unmade(&args.urls, &checks);
    let failed = checks.iter().flatten().any(|check| check.outcome == Outcome::Fail);
    let (overall, exit_code) = match (failed, unchecked.is_empty()) {
        (true, _) => (Overall::Fail, EXIT_FAIL),
        (false, false) => (Overall::Inconclusive, EXIT_INCONCLUSIVE),
        (false, true) => (Overall::Pass, 0),
    };
    let not_measured = if args.idle { vec![] } else { vec![IDLE_NOT_MEASURED] };
    if args.client.json {
        output::json(&Report {
            ok: overall == Overall::Pass,
            outcome: overall,
            exit_code,
            hops: &hops,
            checks: &checks,
            verdicts: &verdicts,
            unchecked: &unchecked,
            not_measured,
        })?;
    } else {
        output::stdout(&render(&args.urls, &checks, &verdicts, &unchecked, args.idle))?;
    }
    Ok(ExitCode::from(exit_code))
}

fn render(urls: &[String], checks: &[Vec<Check>], verdicts: &[Verdict], unchecked: &[Unmade], idle: bool) -> String {
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
                    Outcome::Unchecked => "UNCHECKED",
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
    let count: usize = unchecked.iter().map(|unmade| unmade.checks.len()).sum();
    let idle_note = if idle { String::new() } else { format!(" ({IDLE_NOT_MEASURED})") };
    if verdicts.is_empty() && unchecked.is_empty() {
        text.push_str(&format!(
            "verdict: every check passes on every hop; live logs work through this chain{idle_note}\n"
        ));
    }
    for verdict in verdicts {
        text.push_str(&format!(
            "verdict: {} breaks at hop {} ({}): {}\n  fix: {}\n",
            verdict.check, verdict.hop, verdict.url, verdict.cause, verdict.remedy
        ));
    }
    if !unchecked.is_empty() {
        let lead = if verdicts.is_empty() { "verdict: inconclusive" } else { "also inconclusive" };
        let plural = if count == 1 { "check" } else { "checks" };
        text.push_str(&format!("{lead}: {count} {plural} could not be made{idle_note}\n"));
        for unmade in unchecked {
            text.push_str(&format!(
                "  hop {} ({}): {} not checked: {}\n    fix: {}\n",
                unmade.hop,
                unmade.url,
                unmade.checks.join(", "),
                unmade.cause,
                unmade.remedy
            ));
        }
    } else if !verdicts.is_empty() && !idle {
        text.push_str(&format!("note: {IDLE_NOT_MEASURED}\n"));
    }
    text
}
