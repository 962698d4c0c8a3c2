//! A store copied SQLite → PostgreSQL → SQLite holds exactly what it held: every run, every
//! stored chunk byte for byte, the tokens with their parents, the audit chain and its signed
//! head; and the copy refuses what it must (a target in use, live runs) and sees tampering.

use oneoff_core::audit::{verify, AuditAction, AuditEntry, AuditKey};
use oneoff_core::{LogEntry, LogStream, RunId, RunStatus};

use super::{CopyError, LiveRuns};
use crate::{Finish, NewRun, NewToken, PostgresOptions, Store};

async fn sqlite(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open_sqlite(&dir.path().join(name)).await.unwrap()
}

async fn postgres() -> (Store, String) {
    let url = oneoff_testpg::Postgres::shared().new_database();
    (Store::open_postgres(&url, &PostgresOptions::default()).await.unwrap(), url)
}

fn new_run(job: &str, created_at_us: i64) -> NewRun {
    NewRun {
        job: job.into(),
        params: vec![],
        argv: vec!["echo".into(), "é \u{0}".into()],
        requested_by: Some("alice".into()),
        created_at_us,
        held_by: None,
    }
}

fn finish(status: RunStatus, at_us: i64) -> Finish {
    Finish { status, finished_at_us: at_us, exit_code: Some(0), signal: None, error: None }
}

/// Lines of every kind: text, binary bytes, a line stored in three pieces, stderr, system.
fn entries(from_seq: u64, count: u64) -> Vec<LogEntry> {
    (from_seq..from_seq + count)
        .map(|seq| {
            let piece = seq % 7;
            LogEntry {
                seq,
                ts_us: 1_000_000 + seq as i64,
                stream: match seq % 5 {
                    0 => LogStream::Stderr,
                    4 => LogStream::System,
                    _ => LogStream::Stdout,
                },
                bytes: match seq % 3 {
                    0 => vec![0xff, 0x00, 0xfe, b'\r', 0x1b, b'[', b'm', (seq % 256) as u8],
                    1 => format!("line {seq} ünïcode").into_bytes(),
                    _ => vec![b'x'; (seq % 300) as usize],
                }
                .into(),
                continues: piece == 1 || piece == 2,
                partial: piece == 0 || piece == 1,
            }
        })
        .collect()
}

fn token(hash: &str, parent_id: Option<i64>) -> NewToken {
    NewToken {
        name: hash.into(),
        user: "bot".into(),
        groups: vec!["eng".into(), "o\"ps".into()],
        hash: hash.into(),
        created_by: "alice".into(),
        created_at_us: 10,
        expires_at_us: Some(1_000),
        parent_id,
    }
}

fn audit_entry(index: i64, action: AuditAction) -> AuditEntry {
    AuditEntry {
        at_us: index,
        actor: "alice".into(),
        source: "token".into(),
        client: "127.0.0.1".into(),
        action,
        message: format!("record {index} «quoted»"),
        job: (index % 2 == 0).then(|| "backfill".into()),
        run_id: Some(index),
        detail: "{\"why\":\"test\"}".into(),
    }
}

/// A store as a server leaves it: a long log, many runs (more than a page), one deleted by
/// retention (so the id generator is past the highest id left), tokens three generations
/// deep with one revoked, and a keyed audit chain with its signed head.
async fn fill(store: &Store, key: &AuditKey) -> RunId {
    // Claimed by a replica (`replica`), started with secret values held (`held_by`), and
    // asked to cancel (`cancel_requested_at_us`): every column of a run travels.
    let replica =
        crate::ReplicaIdentity { name: "a".into(), instance: "i-1".into(), host: "h".into(), boot_id: None, pid: 1 };
    let held = NewRun { held_by: Some("a".into()), ..new_run("backfill", 1) };
    let long = store.insert_run(&held, u32::MAX).await.unwrap();
    let claim = crate::Claim {
        replica: &replica,
        max_concurrent_runs: 10,
        job_limits: &std::collections::HashMap::new(),
        max: 1,
        holding: &[long.id],
        now_us: 2,
    };
    store.register_replica(&replica, std::time::Duration::from_secs(3600), 2).await.unwrap();
    assert_eq!(store.claim_runs(&claim).await.unwrap().len(), 1);
    store.request_cancel(long.id, std::time::Duration::from_secs(3600), 3).await.unwrap();
    let mut seq = 1;
    // Many appends of different sizes: many chunks (more than a page), one larger than 256 KiB.
    for count in [1, 2, 3, 50, 400, 5, 1, 2_000, 1, 7, 9, 11, 13, 15, 17, 19, 21, 23, 100, 3] {
        store.append_log(long.id, &entries(seq, count)).await.unwrap();
        seq += count;
    }
    let big: Vec<LogEntry> = (0..3)
        .map(|index| LogEntry {
            seq: seq + index,
            ts_us: 9,
            stream: LogStream::Stdout,
            bytes: vec![b'a' + index as u8; 200_000].into(),
            continues: false,
            partial: false,
        })
        .collect();
    store.append_log(long.id, &big).await.unwrap();
    store.finish_run(long.id, &finish(RunStatus::Succeeded, 100)).await.unwrap();

    let doomed = store.insert_run(&new_run("old", 1), u32::MAX).await.unwrap();
    store.finish_run(doomed.id, &finish(RunStatus::Failed, 5)).await.unwrap();
    for index in 0..520 {
        let run = store.insert_run(&new_run("many", 10 + index), u32::MAX).await.unwrap();
        if index % 100 == 0 {
            store.append_log(run.id, &entries(1, 3)).await.unwrap();
        }
        store.finish_run(run.id, &finish(RunStatus::Cancelled, 1_000 + index)).await.unwrap();
    }
    // The newest run is deleted too: the copy's id generator must go on past it.
    let last = store.insert_run(&new_run("last", 2_000), u32::MAX).await.unwrap();
    store.finish_run(last.id, &finish(RunStatus::Lost, 4)).await.unwrap();
    assert_eq!(store.delete_finished_before(6).await.unwrap(), 2, "retention deleted two runs");

    let root = store.insert_token(&token("root", None)).await.unwrap().unwrap();
    let child = store.insert_token(&token("child", Some(root.id))).await.unwrap().unwrap();
    store.insert_token(&token("grandchild", Some(child.id))).await.unwrap().unwrap();
    let other = store.insert_token(&token("other", None)).await.unwrap().unwrap();
    store.revoke_token(other.id, 77).await.unwrap();
    store.use_token("child", 88).await.unwrap();

    store.append_audit(&audit_entry(1, AuditAction::AuditAnchor), Some(key)).await.unwrap();
    for index in 2..=30 {
        store.append_audit(&audit_entry(index, AuditAction::RunStart), Some(key)).await.unwrap();
    }
    long.id
}

#[tokio::test]
async fn a_store_copied_to_postgres_and_back_holds_exactly_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::new(&[7; 32], "test").unwrap();
    let source = sqlite(&dir, "source.db").await;
    let long = fill(&source, &key).await;
    let (postgres, _url) = postgres().await;

    source.copy_into(&postgres, LiveRuns::Refuse).await.unwrap();
    let copied = source.compare_copy(&postgres).await.unwrap();
    let back = sqlite(&dir, "back.db").await;
    postgres.copy_into(&back, LiveRuns::Refuse).await.unwrap();
    assert_eq!(postgres.compare_copy(&back).await.unwrap(), copied, "postgres → sqlite is the same code");
    assert_eq!(source.compare_copy(&back).await.unwrap(), copied, "the round trip changed nothing");

    assert!(copied.log_chunks > 20 && copied.runs > 500, "{copied:?}");
    assert_eq!(copied.tokens, 4);
    assert_eq!(copied.audit_head.records, 30);
    let signed = copied.signed_head.clone().expect("the signed head is copied");
    assert!(key.head_is_signed(&signed) && signed.head == copied.audit_head, "{signed:?}");
    for store in [&postgres, &back] {
        let (chain, head) = store.audit_snapshot().await.unwrap();
        assert_eq!(verify(&chain).unwrap(), copied.audit_head);
        assert_eq!(head.as_ref(), Some(&signed));
        // The server's next append moves the head on from the copied one.
        let appended = store.append_audit(&audit_entry(31, AuditAction::RunStart), Some(&key)).await.unwrap();
        assert_eq!((appended.record.id, appended.head), (31, crate::HeadUpdate::Signed));

        let read = |store: Store| async move { store.read_log(long, 0, usize::MAX, usize::MAX).await.unwrap() };
        assert_eq!(read(store.clone()).await, read(source.clone()).await, "every entry, flags and bytes");
        let tokens = store.list_tokens(None).await.unwrap();
        assert_eq!(tokens, source.list_tokens(None).await.unwrap());
        assert_eq!(store.revoke_token(tokens[0].id, 99).await.unwrap().len(), 3, "parents still link children");
    }
    // New ids go on after the source's highest ever given, not after the highest left.
    let source_next = source.insert_run(&new_run("next", 1), u32::MAX).await.unwrap().id;
    assert_eq!(postgres.insert_run(&new_run("next", 1), u32::MAX).await.unwrap().id, source_next);
    assert_eq!(back.insert_run(&new_run("next", 1), u32::MAX).await.unwrap().id, source_next);
    let next_token = source.insert_token(&token("next", None)).await.unwrap().unwrap().id;
    assert_eq!(postgres.insert_token(&token("next", None)).await.unwrap().unwrap().id, next_token);
}

#[tokio::test]
async fn a_copy_goes_only_into_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite(&dir, "source.db").await;
    source.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    source.finish_run(RunId(1), &finish(RunStatus::Succeeded, 2)).await.unwrap();
    let (target, _url) = postgres().await;
    let token_only = sqlite(&dir, "token.db").await;
    token_only.insert_token(&token("t", None)).await.unwrap();
    let audit_only = sqlite(&dir, "audit.db").await;
    audit_only.append_audit(&audit_entry(1, AuditAction::RunStart), None).await.unwrap();

    source.copy_into(&target, LiveRuns::Refuse).await.unwrap();
    for used in [&target, &token_only, &audit_only] {
        match source.copy_into(used, LiveRuns::Refuse).await {
            Err(CopyError::TargetNotEmpty { runs, tokens, audit_records }) => {
                assert_eq!(runs + tokens + audit_records, 1, "{runs} {tokens} {audit_records}")
            }
            other => panic!("a used target must be refused: {other:?}"),
        }
    }
    assert_eq!(target.counts().await.unwrap().runs, 1, "the refusal wrote nothing");
}

#[tokio::test]
async fn live_runs_are_refused_unless_asked_and_then_copied_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite(&dir, "source.db").await;
    let running = source.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    source.mark_running(running.id, 2).await.unwrap();
    source.append_log(running.id, &entries(1, 10)).await.unwrap();
    let queued = source.insert_run(&new_run("a", 3), u32::MAX).await.unwrap();
    let (target, _url) = postgres().await;

    match source.copy_into(&target, LiveRuns::Refuse).await {
        Err(CopyError::LiveRuns { running: 1, queued: 1 }) => {}
        other => panic!("live runs must be refused: {other:?}"),
    }
    assert_eq!(target.counts().await.unwrap().runs, 0, "nothing was copied");
    source.copy_into(&target, LiveRuns::Copy).await.unwrap();
    source.compare_copy(&target).await.unwrap();
    assert_eq!(target.run(running.id).await.unwrap().unwrap().status, RunStatus::Running);
    assert_eq!(target.run(queued.id).await.unwrap().unwrap().status, RunStatus::Queued);
}

#[tokio::test]
async fn the_comparison_sees_a_changed_byte_a_missing_chunk_and_a_changed_row() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::new(&[7; 32], "test").unwrap();
    let source = sqlite(&dir, "source.db").await;
    let long = fill(&source, &key).await;
    let source = &source;
    let tamper = |sql: String| async move {
        let (target, url) = postgres().await;
        source.copy_into(&target, LiveRuns::Refuse).await.unwrap();
        let raw = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(&sql).execute(&raw).await.unwrap();
        raw.close().await;
        source.compare_copy(&target).await
    };
    let changed_byte = format!(
        "UPDATE log_chunks SET entries = set_byte(entries, 20, 255 - get_byte(entries, 20)) \
         WHERE run_id = {} AND first_seq = 4",
        long.0
    );
    match tamper(changed_byte).await {
        Err(CopyError::Mismatch(message)) => {
            assert!(message.contains(&format!("log of run {} differs", long.0)), "{message}");
            assert!(message.contains("different bytes"), "{message}");
        }
        other => panic!("a changed byte must be seen: {other:?}"),
    }
    match tamper(format!("DELETE FROM log_chunks WHERE run_id = {} AND first_seq = 1", long.0)).await {
        Err(CopyError::Mismatch(message)) => assert!(message.contains("differs"), "{message}"),
        other => panic!("a missing chunk must be seen: {other:?}"),
    }
    match tamper("UPDATE runs SET error = 'x' WHERE id = 3".into()).await {
        Err(CopyError::Mismatch(message)) => assert!(message.contains("rows of runs differ"), "{message}"),
        other => panic!("a changed run must be seen: {other:?}"),
    }
    match tamper("UPDATE audit_head SET records = 29".into()).await {
        Err(CopyError::Mismatch(message)) => assert!(message.contains("signed audit head"), "{message}"),
        other => panic!("a changed head must be seen: {other:?}"),
    }
}

#[tokio::test]
async fn a_source_chain_that_does_not_verify_is_copied_as_it_is_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite(&dir, "source.db").await;
    for index in 1..=3 {
        source.append_audit(&audit_entry(index, AuditAction::RunStart), None).await.unwrap();
    }
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("source.db").display())).await.unwrap();
    sqlx::query("UPDATE audit SET actor = 'mallory' WHERE id = 2").execute(&raw).await.unwrap();
    raw.close().await;
    let (target, _url) = postgres().await;

    source.copy_into(&target, LiveRuns::Refuse).await.unwrap();
    match source.compare_copy(&target).await {
        Err(CopyError::SourceChainBroken { record: 2, reason }) => assert!(reason.contains("edited"), "{reason}"),
        other => panic!("the source's break must be named as the source's: {other:?}"),
    }
    assert_eq!(target.audit_chain().await.unwrap(), source.audit_chain().await.unwrap(), "copied as it is");
}

#[test]
fn a_page_of_large_values_stops_at_its_byte_bound_but_always_holds_one_row() {
    assert_eq!(super::rows_within(&[100, 100, 100], 250), 2);
    assert_eq!(super::rows_within(&[100, 100, 100], 300), 3);
    assert_eq!(super::rows_within(&[1_000, 1], 250), 1, "one row larger than the bound still makes progress");
    assert_eq!(super::rows_within(&[], 250), 0);
}

/// A column added by a migration but not to `TABLES` would be left behind by every copy, and
/// the comparison (which digests the listed columns) would not see it: so every column of
/// every copied table, as each backend's schema has it, must be listed.
#[tokio::test]
async fn every_column_of_the_schema_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    sqlite(&dir, "schema.db").await.close().await;
    let (store, url) = postgres().await;
    store.close().await;
    let sqlite_pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let postgres_pool = sqlx::PgPool::connect(&url).await.unwrap();
    for table in super::TABLES {
        let mut listed: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        listed.sort_unstable();
        let mut in_sqlite: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{}')", table.name))
                .fetch_all(&sqlite_pool)
                .await
                .unwrap();
        in_sqlite.sort_unstable();
        let mut in_postgres: Vec<String> =
            sqlx::query_scalar("SELECT column_name::TEXT FROM information_schema.columns WHERE table_name = $1")
                .bind(table.name)
                .fetch_all(&postgres_pool)
                .await
                .unwrap();
        in_postgres.sort_unstable();
        assert_eq!(in_sqlite, listed, "SQLite's {} has columns the copy does not carry (copy.rs TABLES)", table.name);
        assert_eq!(in_postgres, listed, "PostgreSQL's {} has columns the copy does not carry", table.name);
    }
}
