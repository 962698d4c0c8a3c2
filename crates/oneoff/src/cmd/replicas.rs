//! `oneoff replicas`: the live replicas sharing the server's store, as a table.

use std::process::ExitCode;

use oneoff_api::v1::{Replica, ReplicaList};

use crate::cli::JobsArgs;
use crate::cmd::client;
use crate::output::{self, short_time};

pub async fn run(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let replicas = client(&args.client).replicas().await?;
    if args.client.json {
        output::json(&ReplicaList { replicas })?;
    } else {
        output::stdout(&replicas_table(&replicas))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn replicas_table(replicas: &[Replica]) -> String {
    let rows: Vec<Vec<String>> = replicas
        .iter()
        .map(|replica| {
            vec![
                replica.name.clone(),
                replica.host.clone(),
                short_time(&replica.started_at),
                format!("{:.1}s ago", replica.heartbeat_age_ms as f64 / 1000.0),
                replica.running.to_string(),
                if replica.draining { "draining" } else { "serving" }.to_string(),
            ]
        })
        .collect();
    output::table(&["name", "host", "started", "heartbeat", "running", "state"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draining_replica_says_so() {
        let replica = Replica {
            name: "a".into(),
            host: "node-1".into(),
            started_at: "2026-01-01T12:00:00Z".into(),
            last_heartbeat: "2026-01-01T12:00:05Z".into(),
            heartbeat_age_ms: 1500,
            running: 2,
            draining: true,
        };
        let table = replicas_table(&[replica]);
        assert!(table.contains("node-1"), "{table}");
        assert!(table.contains("1.5s ago"), "{table}");
        assert!(table.contains("draining"), "{table}");
    }
}
