//! The store story: what every backend must do, run against a real SQLite file and a real
//! PostgreSQL server (a throwaway cluster of this test process, one database per test).
//! Each story is an `async fn(Fresh)`; `story!` makes a test of it for each backend.

use oneoff_core::{LogEntry, LogStream, RunId, RunStatus, StoredParam};

use std::collections::HashMap;
use std::time::Duration;

use crate::{
    CancelRequest, Claim, Finish, LogEvent, LogEvents, LogHead, LostReplica, NewRun, NewStreamTicket, PostgresOptions,
    Registration, ReplicaIdentity, RunFilter, Store, StoreError, StreamTicketRecord, TicketCaps, TicketRefusal,
};

/// An empty store of one backend, what keeps it alive, and raw access for tampering.
struct Fresh {
    store: Store,
    location: Location,
    _dir: Option<tempfile::TempDir>,
}

enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Fresh {
    async fn sqlite() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oneoff.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        Fresh { store, location: Location::Sqlite(path), _dir: Some(dir) }
    }

    async fn postgres() -> Fresh {
        let url = oneoff_testpg::Postgres::shared().new_database();
        let store = Store::open_postgres(&url, &PostgresOptions::default()).await.unwrap();
        Fresh { store, location: Location::Postgres(url), _dir: None }
    }

    /// The same database opened again, as by a restarted server.
    async fn reopen(&self) -> Store {
        match &self.location {
            Location::Sqlite(path) => Store::open_sqlite(path).await.unwrap(),
            Location::Postgres(url) => Store::open_postgres(url, &PostgresOptions::default()).await.unwrap(),
        }
    }

    /// Runs one statement past the store, as someone with the database's credentials would.
    async fn tamper(&self, sql: &str) {
        match &self.location {
            Location::Sqlite(path) => {
                let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query(sql).execute(&raw).await.unwrap();
                raw.close().await;
            }
            Location::Postgres(url) => {
                let raw = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(sql).execute(&raw).await.unwrap();
                raw.close().await;
            }
        }
    }
}

/// Each story as a test on SQLite (`sqlite::name`) and on PostgreSQL (`postgres::name`).
macro_rules! story {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Fresh::sqlite().await).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Fresh::postgres().await).await
            })*
        }
    };
}

fn new_run(job: &str, created_at_us: i64) -> NewRun {
    NewRun {
        job: job.into(),
        params: vec![
            ("since".into(), StoredParam::Text("2026-01-01".into())),
            ("batch".into(), StoredParam::Integer(5)),
            ("dry_run".into(), StoredParam::Boolean(true)),
            ("token".into(), StoredParam::Redacted),
        ],
        argv: vec!["echo".into(), "$(id); rm -rf /".into()],
        requested_by: Some("alice".into()),
        created_at_us,
        held_by: None,
    }
}

fn entry(seq: u64, bytes: &[u8]) -> LogEntry {
    LogEntry {
        seq,
        ts_us: 1_000 + seq as i64,
        stream: LogStream::Stdout,
        bytes: bytes.to_vec().into(),
        continues: false,
        partial: false,
    }
}

async fn runs_go_through_their_lifecycle(fresh: Fresh) {
    let store = fresh.store.clone();
    let run = store.insert_run(&new_run("backfill", 10), u32::MAX).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.params, new_run("backfill", 10).params);
    assert_eq!(run.argv[1], "$(id); rm -rf /");

    store.mark_running(run.id, 20).await.unwrap();
    let finish =
        Finish { status: RunStatus::Failed, finished_at_us: 30, exit_code: Some(3), signal: None, error: None };
    store.finish_run(run.id, &finish).await.unwrap();
    // A second outcome never overwrites the first.
    let late = Finish {
        status: RunStatus::Lost,
        finished_at_us: 40,
        exit_code: None,
        signal: None,
        error: Some("late".into()),
    };
    store.finish_run(run.id, &late).await.unwrap();

    let stored = store.run(run.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.exit_code, stored.started_at_us, stored.finished_at_us),
        (RunStatus::Failed, Some(3), Some(20), Some(30))
    );
    assert!(store.mark_running(run.id, 50).await.is_err(), "a finished run cannot start again");
    assert!(store.run(RunId(999)).await.unwrap().is_none());
}

async fn listing_filters_and_paginates_newest_first(fresh: Fresh) {
    let store = fresh.store.clone();
    for index in 0..5 {
        store.insert_run(&new_run(if index % 2 == 0 { "a" } else { "b" }, index), u32::MAX).await.unwrap();
    }
    let page = store.list_runs(&RunFilter { limit: 2, ..RunFilter::default() }).await.unwrap();
    assert_eq!(page.iter().map(|run| run.id.0).collect::<Vec<_>>(), vec![5, 4]);
    let next = store.list_runs(&RunFilter { limit: 2, before: Some(RunId(4)), ..RunFilter::default() }).await.unwrap();
    assert_eq!(next.iter().map(|run| run.id.0).collect::<Vec<_>>(), vec![3, 2]);
    let only_a =
        store.list_runs(&RunFilter { limit: 10, job: Some("a".into()), ..RunFilter::default() }).await.unwrap();
    assert_eq!(only_a.len(), 3);
    store.mark_running(RunId(1), 1).await.unwrap();
    let running = store
        .list_runs(&RunFilter { limit: 10, status: Some(RunStatus::Running), ..RunFilter::default() })
        .await
        .unwrap();
    assert_eq!(running.iter().map(|run| run.id.0).collect::<Vec<_>>(), vec![1]);
    let queued = store.runs_with_status(RunStatus::Queued).await.unwrap();
    assert_eq!(queued.iter().map(|run| run.id.0).collect::<Vec<_>>(), vec![2, 3, 4, 5], "oldest first");
}

async fn log_lines_keep_their_bytes_and_order(fresh: Fresh) {
    let store = fresh.store.clone();
    let run = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    let entries: Vec<LogEntry> = (1..=2500).map(|seq| entry(seq, format!("line {seq}").as_bytes())).collect();
    for chunk in entries.chunks(700) {
        store.append_log(run.id, chunk).await.unwrap();
    }
    store.append_log(run.id, &[entry(2501, &[0xff, 0x00, 0xfe, b'\r'])]).await.unwrap();

    assert_eq!(store.last_seq(run.id).await.unwrap(), 2501);
    let page = store.read_log(run.id, 0, 3, usize::MAX).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    let tail = store.read_log(run.id, 2499, 100, usize::MAX).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1].bytes, vec![0xff, 0x00, 0xfe, b'\r'], "binary output is stored without loss");
    assert!(store.read_log(run.id, 2501, 100, usize::MAX).await.unwrap().is_empty());
    let page = store.read_log(run.id, 695, 10, usize::MAX).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), (696..=705).collect::<Vec<_>>(), "a page spans chunks");
    assert!(store.append_log(run.id, &[entry(5, b"dup")]).await.is_err(), "a sequence number is written once");
    assert!(store.append_log(run.id, &[entry(2503, b"gap")]).await.is_err(), "no gap in the sequence");
    assert!(
        store.append_log(run.id, &[entry(2502, b"a"), entry(2504, b"b")]).await.is_err(),
        "entries are consecutive"
    );
}

async fn one_transaction_appends_to_many_runs_and_refuses_only_the_bad_append(fresh: Fresh) {
    let store = fresh.store.clone();
    let first = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    let second = store.insert_run(&new_run("a", 2), u32::MAX).await.unwrap();
    let (one, two) = ([entry(1, b"a1"), entry(2, b"a2")], [entry(1, b"b1")]);
    let results = store.append_logs(&[(first.id, &one), (second.id, &two)]).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let (gap, next) = ([entry(4, b"gap")], [entry(2, b"b2")]);
    let results = store.append_logs(&[(first.id, &gap), (second.id, &next)]).await.unwrap();
    assert!(
        matches!(results[0], Err(StoreError::Sequence { expected: 3, found: 4, .. })),
        "the gap is refused and says what was expected: {:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "the other run's append is stored: {:?}", results[1]);
    assert_eq!(store.last_seq(first.id).await.unwrap(), 2);
    let second_log = store.read_log(second.id, 0, 10, usize::MAX).await.unwrap();
    assert_eq!(second_log.iter().map(|e| &e.bytes[..]).collect::<Vec<_>>(), vec![&b"b1"[..], b"b2"]);
}

async fn retention_deletes_only_old_finished_runs(fresh: Fresh) {
    let store = fresh.store.clone();
    let old = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    let recent = store.insert_run(&new_run("a", 2), u32::MAX).await.unwrap();
    let live = store.insert_run(&new_run("a", 3), u32::MAX).await.unwrap();
    for (run, finished) in [(&old, 100), (&recent, 10_000)] {
        store.append_log(run.id, &[entry(1, b"x")]).await.unwrap();
        let finish = Finish {
            status: RunStatus::Succeeded,
            finished_at_us: finished,
            exit_code: Some(0),
            signal: None,
            error: None,
        };
        store.finish_run(run.id, &finish).await.unwrap();
    }
    assert_eq!(store.delete_finished_before(5_000).await.unwrap(), 1);
    assert!(store.run(old.id).await.unwrap().is_none());
    assert!(store.read_log(old.id, 0, 10, usize::MAX).await.unwrap().is_empty());
    assert!(store.run(recent.id).await.unwrap().is_some());
    assert!(store.run(live.id).await.unwrap().is_some());
}

async fn reopening_keeps_everything(fresh: Fresh) {
    let store = fresh.store.clone();
    let run = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    store.append_log(run.id, &[entry(1, b"kept")]).await.unwrap();
    store.close().await;
    let store = fresh.reopen().await;
    assert_eq!(store.read_log(run.id, 0, 10, usize::MAX).await.unwrap()[0].bytes, &b"kept"[..]);
    store.ping().await.unwrap();
}

async fn run_listing_can_be_limited_to_visible_jobs(fresh: Fresh) {
    let store = fresh.store.clone();
    for job in ["a", "b", "c"] {
        store.insert_run(&new_run(job, 1), u32::MAX).await.unwrap();
    }
    let filter = RunFilter { limit: 10, jobs_in: Some(vec!["a".into(), "c".into()]), ..RunFilter::default() };
    let jobs: Vec<String> = store.list_runs(&filter).await.unwrap().into_iter().map(|run| run.job).collect();
    assert_eq!(jobs, vec!["c", "a"]);
    let none = RunFilter { limit: 10, jobs_in: Some(vec![]), ..RunFilter::default() };
    assert!(store.list_runs(&none).await.unwrap().is_empty());
}

async fn tokens_are_found_by_hash_used_and_revoked(fresh: Fresh) {
    let store = fresh.store.clone();
    let new = crate::NewToken {
        name: "ci".into(),
        user: "bot".into(),
        groups: vec!["eng".into()],
        hash: "abc".into(),
        created_by: "alice".into(),
        created_at_us: 5,
        expires_at_us: None,
        parent_id: None,
    };
    let token = store.insert_token(&new).await.unwrap().unwrap();
    let used = store.use_token("abc", 99).await.unwrap().unwrap();
    assert_eq!((used.id, used.groups.clone()), (token.id, vec!["eng".to_string()]));
    assert_eq!(store.token(token.id).await.unwrap().unwrap().last_used_us, Some(99));
    assert!(store.use_token("nope", 1).await.unwrap().is_none());
    assert_eq!(store.revoke_token(token.id, 100).await.unwrap(), vec![token.id]);
    assert!(store.revoke_token(token.id, 101).await.unwrap().is_empty(), "revoked once");
    assert_eq!(store.list_tokens(Some("bot")).await.unwrap().len(), 1);
    assert!(store.list_tokens(Some("alice")).await.unwrap().is_empty());
}

fn audit_entry(index: i64, action: oneoff_core::audit::AuditAction) -> oneoff_core::audit::AuditEntry {
    oneoff_core::audit::AuditEntry {
        at_us: index,
        actor: "alice".into(),
        source: "anonymous".into(),
        client: "127.0.0.1".into(),
        action,
        message: format!("record {index}"),
        job: Some("a".into()),
        run_id: Some(index),
        detail: "{}".into(),
    }
}

async fn tokens_made_with_a_token_go_with_it(fresh: Fresh) {
    let store = fresh.store.clone();
    let token = |hash: &str, parent_id: Option<i64>, expires_at_us: Option<i64>| crate::NewToken {
        name: hash.into(),
        user: "bot".into(),
        groups: vec![],
        hash: hash.into(),
        created_by: "alice".into(),
        created_at_us: 10,
        expires_at_us,
        parent_id,
    };
    let root = store.insert_token(&token("root", None, None)).await.unwrap().unwrap();
    let child = store.insert_token(&token("child", Some(root.id), None)).await.unwrap().unwrap();
    let grandchild = store.insert_token(&token("grandchild", Some(child.id), None)).await.unwrap().unwrap();
    let unrelated = store.insert_token(&token("unrelated", None, None)).await.unwrap().unwrap();
    assert_eq!(grandchild.parent_id, Some(child.id));
    let expired = store.insert_token(&token("expired", None, Some(5))).await.unwrap().unwrap();
    assert!(store.insert_token(&token("late", Some(expired.id), None)).await.unwrap().is_none(), "expired parent");
    assert!(store.insert_token(&token("nobody", Some(9999), None)).await.unwrap().is_none(), "no such parent");

    assert_eq!(store.revoke_token(root.id, 50).await.unwrap(), vec![root.id, child.id, grandchild.id]);
    assert_eq!(store.token(grandchild.id).await.unwrap().unwrap().revoked_at_us, Some(50));
    assert_eq!(store.token(unrelated.id).await.unwrap().unwrap().revoked_at_us, None);
    assert!(store.insert_token(&token("orphan", Some(child.id), None)).await.unwrap().is_none(), "revoked parent");
}

async fn the_audit_chain_verifies_and_breaks_on_tampering(fresh: Fresh) {
    use oneoff_core::audit::{AuditAction, Denial};
    let store = fresh.store.clone();
    for index in 0..5 {
        let action = if index == 2 { AuditAction::Denied(Denial::AuditRead) } else { AuditAction::RunStart };
        let appended = store.append_audit(&audit_entry(index, action), None).await.unwrap();
        assert_eq!(appended.head, crate::HeadUpdate::Unkeyed);
    }
    let chain = store.audit_chain().await.unwrap();
    assert_eq!(oneoff_core::audit::verify(&chain).map(|head| head.records), Ok(5));
    let page = store.list_audit(&crate::AuditFilter { limit: 2, ..crate::AuditFilter::default() }).await.unwrap();
    assert_eq!(page.iter().map(|record| record.id).collect::<Vec<_>>(), vec![5, 4]);
    // A time window: from `since_us` (inclusive) to `until_us` (exclusive); record N is at N µs.
    let window =
        crate::AuditFilter { since_us: Some(1), until_us: Some(3), limit: 10, ..crate::AuditFilter::default() };
    let ids: Vec<i64> = store.list_audit(&window).await.unwrap().iter().map(|record| record.id).collect();
    assert_eq!(ids, vec![3, 2], "records at 1 and 2 µs (ids 2 and 3), not the one at 3 µs");

    // Someone with the database file edits a record.
    fresh.tamper("UPDATE audit SET actor = 'mallory' WHERE id = 3").await;
    let broken = oneoff_core::audit::verify(&store.audit_chain().await.unwrap()).unwrap_err();
    assert_eq!(broken.id, 3);
}

async fn records_written_before_action_codes_still_verify_and_filter(fresh: Fresh) {
    use oneoff_core::audit::{chain_hash, AuditAction, Denial, RecordFormat, GENESIS};
    let store = fresh.store.clone();
    // A record as versions before 0004 wrote it: prose in the action column, no message.
    let legacy = audit_entry(1, AuditAction::Denied(Denial::AuditRead));
    let format = RecordFormat::Legacy { stored_action: "denied.read the audit trail".into() };
    let hash = chain_hash(1, &legacy, &format, GENESIS);
    fresh
        .tamper(&format!(
            "INSERT INTO audit (id, at_us, actor, source, client, action, job, run_id, detail, prev_hash, hash) \
             VALUES (1, 1, 'alice', 'anonymous', '127.0.0.1', 'denied.read the audit trail', 'a', 1, '{{}}', '{GENESIS}', '{hash}')"
        ))
        .await;
    store.append_audit(&audit_entry(2, AuditAction::Denied(Denial::AuditRead)), None).await.unwrap();
    let chain = store.audit_chain().await.unwrap();
    assert_eq!(oneoff_core::audit::verify(&chain).map(|head| head.records), Ok(2));
    assert_eq!(chain[0].entry.action, AuditAction::Denied(Denial::AuditRead));
    assert_eq!(chain[0].entry.message, "alice may not read the audit trail job `a`");
    let filter = crate::AuditFilter {
        action: Some(AuditAction::Denied(Denial::AuditRead)),
        limit: 10,
        ..crate::AuditFilter::default()
    };
    assert_eq!(store.list_audit(&filter).await.unwrap().len(), 2, "old prose and new codes match one filter");
}

async fn the_signed_head_moves_only_from_a_head_that_signs_the_chain(fresh: Fresh) {
    use oneoff_core::audit::{AuditAction, AuditKey};
    let store = fresh.store.clone();
    let key = AuditKey::new(&[7; 32], "test").unwrap();
    store.append_audit(&audit_entry(1, AuditAction::RunStart), None).await.unwrap();
    let unanchored = store.append_audit(&audit_entry(2, AuditAction::RunStart), Some(&key)).await.unwrap();
    assert!(matches!(unanchored.head, crate::HeadUpdate::Withheld(_)), "a keyless chain is adopted explicitly");
    let adopted = store.append_audit(&audit_entry(3, AuditAction::AuditAnchor), Some(&key)).await.unwrap();
    assert_eq!(adopted.head, crate::HeadUpdate::Signed);
    store.append_audit(&audit_entry(4, AuditAction::RunStart), Some(&key)).await.unwrap();
    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!((head.head.records, key.head_is_signed(&head)), (4, true));

    // The tail is cut; the next append must not sign the shortened chain.
    fresh.tamper("DELETE FROM audit WHERE id >= 3").await;
    let after_cut = store.append_audit(&audit_entry(5, AuditAction::RunStart), Some(&key)).await.unwrap();
    match after_cut.head {
        crate::HeadUpdate::Withheld(reason) => assert!(reason.contains("deleted from its end"), "{reason}"),
        other => panic!("the head moved over a cut chain: {other:?}"),
    }
    assert_eq!(store.audit_head().await.unwrap().unwrap().head.records, 4, "the evidence stays");
}

#[tokio::test]
async fn the_write_ahead_log_is_copied_in_the_background_without_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oneoff.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    let run = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    let line = vec![b'x'; 1000];
    let chunk = |first: u64| (first..first + 1000).map(|seq| entry(seq, &line)).collect::<Vec<_>>();

    // About 1 MB, and no commit checkpoints: only the background task can move it into the
    // database file.
    store.append_log(run.id, &chunk(1)).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&path).unwrap().len() < 1_000_000 {
        assert!(std::time::Instant::now() < deadline, "the log never reached the database file");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A writer that never pauses: `sqlite/checkpoint.rs` tests that the log starts over.
    assert_eq!(store.read_log(run.id, 999, 10, usize::MAX).await.unwrap()[0].bytes, line);
}

async fn a_log_read_is_bounded_by_bytes_and_still_reads_every_entry_once(fresh: Fresh) {
    let store = fresh.store.clone();
    let run = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    // One batch of long lines (a 2 MB line cut into pieces), then small lines.
    let long: Vec<LogEntry> = (1..=20).map(|seq| entry(seq, &vec![b'x'; 100_000])).collect();
    store.append_log(run.id, &long).await.unwrap();
    let small: Vec<LogEntry> = (21..=520).map(|seq| entry(seq, b"small")).collect();
    store.append_log(run.id, &small).await.unwrap();

    let first = store.read_log(run.id, 0, 1000, 350_000).await.unwrap();
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3], "300 kB fit in 350 kB, 400 kB do not");
    let alone = store.read_log(run.id, 4, 1000, 10).await.unwrap();
    assert_eq!(alone.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5], "a line larger than the bound comes alone");

    let (mut after, mut pages) = (0, 0);
    loop {
        let page = store.read_log(run.id, after, 1000, 350_000).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.iter().map(|e| e.bytes.len()).sum::<usize>() <= 350_000);
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), (after + 1..=last.seq).collect::<Vec<_>>());
        after = last.seq;
        pages += 1;
    }
    assert_eq!((after, pages), (520, 7), "six pages of three long lines (the last with the small ones), no gap");
}

async fn a_running_run_keeps_where_its_processes_are_across_a_reopen(fresh: Fresh) {
    let store = fresh.store.clone();
    let run = store.insert_run(&new_run("backfill", 10), u32::MAX).await.unwrap();
    assert_eq!(store.run_processes(run.id).await.unwrap(), oneoff_core::RunProcesses::default());
    store.mark_running(run.id, 20).await.unwrap();
    let processes = oneoff_core::RunProcesses {
        cgroup: Some("/sys/fs/cgroup/oneoff-run-1".into()),
        process_group: Some(4242),
        leader_start_ticks: Some(123_456_789),
        boot_id: Some("2e6db71c-2c06-4ea0-8ed3-981e6000224f".into()),
    };
    store.set_run_processes(run.id, &processes).await.unwrap();
    store.close().await;
    let store = fresh.reopen().await;
    assert_eq!(store.run_processes(run.id).await.unwrap(), processes);
    assert!(matches!(store.run_processes(RunId(99)).await, Err(StoreError::RunNotFound(RunId(99)))));
}

/// A store whose file may not grow past `pages` pages: SQLite then fails writes with
/// SQLITE_FULL exactly as on a full disk (and rolls their transaction back by itself).
async fn capped(pages: u32) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let options =
        crate::sqlite::connect_options(&dir.path().join("oneoff.db")).pragma("max_page_count", pages.to_string());
    let store = Store::Sqlite(crate::sqlite::SqliteStore::open_with(options).await.unwrap());
    (dir, store)
}

#[tokio::test]
async fn a_full_disk_refuses_every_write_as_full_and_leaves_no_connection_inside_a_transaction() {
    let (_dir, store) = capped(64).await;
    let run = store.insert_run(&new_run("backfill", 10), u32::MAX).await.unwrap();
    let line = [b'x'; 3000];
    let mut seq = 1;
    let first_refusal = loop {
        match store.append_log(run.id, &[entry(seq, &line)]).await {
            Ok(()) => seq += 1,
            Err(error) => break error,
        }
        assert!(seq < 1000, "the page cap never filled the file");
    };
    assert!(matches!(first_refusal, StoreError::Full(_)), "{first_refusal:?}");
    assert!(first_refusal.to_string().starts_with("storage full"), "{first_refusal}");
    // Each failed append leaves its connection in the pool; before the fix, a connection whose
    // transaction SQLite had rolled back refused every later one with "attempted to call
    // begin_with at non-zero transaction depth", long after space came back.
    for _ in 0..40 {
        match store.append_log(run.id, &[entry(seq, &line)]).await {
            Err(StoreError::Full(_)) => {}
            other => panic!("expected storage full, got {other:?}"),
        }
        match store.insert_run(&new_run("backfill", 20), u32::MAX).await {
            Err(StoreError::Full(_)) | Ok(_) => {}
            Err(other) => panic!("expected storage full, got {other:?}"),
        }
    }
    assert!(matches!(store.check_writable().await, Err(StoreError::Full(_))));
    // Reads go on, and find every line that was stored, gapless.
    let stored = store.read_log(run.id, 0, 10_000, usize::MAX).await.unwrap();
    assert_eq!(stored.len() as u64, seq - 1);
    assert!(stored.iter().zip(1..).all(|(entry, seq)| entry.seq == seq));
}

/// Two servers on one database (two replicas, or a restarted one beside its old handle).
async fn concurrent_audit_appends_from_two_handles_make_one_chain(fresh: Fresh) {
    use oneoff_core::audit::{AuditAction, AuditKey};
    let key = AuditKey::new(&[7; 32], "test").unwrap();
    let (first, second) = (fresh.store.clone(), fresh.reopen().await);
    first.append_audit(&audit_entry(0, AuditAction::AuditAnchor), Some(&key)).await.unwrap();
    let appends = (0..40).map(|index| {
        let store = if index % 2 == 0 { first.clone() } else { second.clone() };
        let key = key.clone();
        tokio::spawn(async move { store.append_audit(&audit_entry(index, AuditAction::RunStart), Some(&key)).await })
    });
    for append in futures_util::future::join_all(appends).await {
        assert_eq!(append.unwrap().unwrap().head, crate::HeadUpdate::Signed);
    }
    let (chain, head) = second.audit_snapshot().await.unwrap();
    assert_eq!(oneoff_core::audit::verify(&chain).map(|head| head.records), Ok(41));
    let head = head.unwrap();
    assert_eq!((head.head.records, key.head_is_signed(&head)), (41, true));
}

/// A second writer of one run's log (a survivor writing "replica lost" while the lost
/// replica still writes) is refused by sequence, and the other runs of its group are stored.
async fn two_writers_of_one_log_cannot_both_extend_it(fresh: Fresh) {
    let (first, second) = (fresh.store.clone(), fresh.reopen().await);
    let contested = first.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    let mut tries = Vec::new();
    for index in 0..20 {
        let store = if index % 2 == 0 { first.clone() } else { second.clone() };
        // Each writer's other run is its own: that append must be stored whatever happens to the first.
        let other = store.insert_run(&new_run("b", 2), u32::MAX).await.unwrap();
        let bytes = format!("writer {index}").into_bytes();
        tries.push(tokio::spawn(async move {
            let line = [entry(1, &bytes)];
            (other.id, store.append_logs(&[(contested.id, &line), (other.id, &line)]).await)
        }));
    }
    let mut won = 0;
    for outcome in futures_util::future::join_all(tries).await {
        let (other, results) = outcome.unwrap();
        let results = results.expect("a refused append never fails its group");
        match &results[0] {
            Ok(()) => won += 1,
            Err(StoreError::Sequence { expected: 2, found: 1, .. }) => {}
            Err(unexpected) => panic!("unexpected refusal: {unexpected:?}"),
        }
        assert!(results[1].is_ok(), "{:?}", results[1]);
        assert_eq!(first.last_seq(other).await.unwrap(), 1);
    }
    assert_eq!(won, 1, "exactly one writer stored sequence number 1");
    assert_eq!(first.read_log(contested.id, 0, 10, usize::MAX).await.unwrap().len(), 1);
}

fn ticket_for(user: &str, hash: &str, run: RunId, expires_at_us: i64) -> NewStreamTicket {
    let principal = oneoff_core::auth::Principal {
        user: user.into(),
        email: None,
        groups: vec!["eng".into()],
        source: oneoff_core::auth::IdentitySource::Token { id: 3, name: "laptop".into() },
        admin: false,
    };
    NewStreamTicket { hash: hash.into(), run, principal, expires_at_us }
}

async fn stream_tickets_are_taken_once_on_any_handle_and_capped_in_the_database(fresh: Fresh) {
    let (a, b) = (fresh.store.clone(), fresh.reopen().await);
    let caps = TicketCaps { max_outstanding: 3, max_per_user: 2 };
    let run = RunId(7);
    assert_eq!(a.issue_stream_ticket(&ticket_for("alice", "h1", run, 100), caps, 10).await.unwrap(), Ok(()));
    // Made on one replica, taken on the other, once, with what it was bound to.
    let taken = b.take_stream_ticket("h1").await.unwrap().expect("the ticket is stored");
    let expected = ticket_for("alice", "h1", run, 100);
    assert_eq!(taken, StreamTicketRecord { run, principal: expected.principal, expires_at_us: 100 });
    assert_eq!(a.take_stream_ticket("h1").await.unwrap(), None, "never twice");
    assert_eq!(b.take_stream_ticket("h1").await.unwrap(), None);
    assert_eq!(a.take_stream_ticket("never-issued").await.unwrap(), None);

    // The caps count unused tickets of both handles, per user (429) and in all (503).
    a.issue_stream_ticket(&ticket_for("alice", "h2", run, 100), caps, 10).await.unwrap().unwrap();
    b.issue_stream_ticket(&ticket_for("alice", "h3", run, 200), caps, 10).await.unwrap().unwrap();
    let refused = a.issue_stream_ticket(&ticket_for("alice", "h4", run, 100), caps, 10).await.unwrap();
    assert_eq!(refused, Err(TicketRefusal::TooManyForUser(2)));
    b.issue_stream_ticket(&ticket_for("bob", "h5", run, 100), caps, 10).await.unwrap().unwrap();
    let refused = a.issue_stream_ticket(&ticket_for("carol", "h6", run, 100), caps, 10).await.unwrap();
    assert_eq!(refused, Err(TicketRefusal::Full(3)));
    assert_eq!(b.take_stream_ticket("h6").await.unwrap(), None, "a refused ticket is not stored");
    // Expired rows are swept when the next ticket is issued: they neither count nor stay.
    b.issue_stream_ticket(&ticket_for("carol", "h7", run, 300), caps, 100).await.unwrap().unwrap();
    assert_eq!(a.take_stream_ticket("h2").await.unwrap(), None, "expired and swept");
    a.issue_stream_ticket(&ticket_for("alice", "h8", run, 300), caps, 100).await.unwrap().unwrap();
    assert!(a.take_stream_ticket("h3").await.unwrap().is_some(), "not expired: still there");

    // Presented to both at once, a ticket is taken by exactly one.
    for round in 0..20 {
        let hash = format!("race{round}");
        a.issue_stream_ticket(
            &ticket_for("dave", &hash, run, 1_000),
            TicketCaps { max_outstanding: 100, max_per_user: 100 },
            100,
        )
        .await
        .unwrap()
        .unwrap();
        let (first, second) = tokio::join!(a.take_stream_ticket(&hash), b.take_stream_ticket(&hash));
        let taken = [first.unwrap(), second.unwrap()].into_iter().flatten().count();
        assert_eq!(taken, 1, "round {round}");
    }
}

async fn log_heads_say_how_far_each_run_is_stored_and_whether_it_ended(fresh: Fresh) {
    let store = fresh.store.clone();
    let live = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap().id;
    let ended = store.insert_run(&new_run("b", 1), u32::MAX).await.unwrap().id;
    let quiet = store.insert_run(&new_run("c", 1), u32::MAX).await.unwrap().id;
    store.append_log(live, &[entry(1, b"x"), entry(2, b"y")]).await.unwrap();
    store.append_log(ended, &[entry(1, b"z")]).await.unwrap();
    let finish =
        Finish { status: RunStatus::Succeeded, finished_at_us: 2, exit_code: Some(0), signal: None, error: None };
    store.finish_run(ended, &finish).await.unwrap();
    let mut heads = store.log_heads(&[live, ended, quiet, RunId(999_999)]).await.unwrap();
    heads.sort_by_key(|head| head.run.0);
    assert_eq!(
        heads,
        vec![
            LogHead { run: live, last_seq: 2, finished: false },
            LogHead { run: ended, last_seq: 1, finished: true },
            LogHead { run: quiet, last_seq: 0, finished: false },
        ],
        "a run that does not exist is left out"
    );
    assert!(store.log_heads(&[]).await.unwrap().is_empty());
}

/// The next event, within a bound (a missing notification fails the test instead of hanging it).
async fn next_event(events: &mut LogEvents) -> LogEvent {
    let next = tokio::time::timeout(std::time::Duration::from_secs(20), events.next()).await;
    next.expect("an event within 20 s").expect("the listener is running")
}

async fn commits_notify_their_heads_and_a_rolled_back_group_notifies_nothing(fresh: Fresh) {
    let Location::Postgres(_) = &fresh.location else {
        assert!(fresh.store.log_events().is_none(), "SQLite has one writer: no events");
        return;
    };
    let listening = fresh.store.clone();
    let mut events = listening.log_events().expect("PostgreSQL has events");
    assert_eq!(next_event(&mut events).await, LogEvent::Missed, "listening: whatever came before was missed");
    // Another replica's commits.
    let writer = fresh.reopen().await;
    let run = writer.insert_run(&new_run("a", 1), u32::MAX).await.unwrap().id;
    let other = writer.insert_run(&new_run("b", 1), u32::MAX).await.unwrap().id;
    writer.append_logs(&[(run, &[entry(1, b"x"), entry(2, b"y")]), (other, &[entry(1, b"z")])]).await.unwrap();
    // One commit, one notification: both runs' heads, in the order they were appended.
    assert_eq!(next_event(&mut events).await, LogEvent::Stored(LogHead { run, last_seq: 2, finished: false }));
    assert_eq!(next_event(&mut events).await, LogEvent::Stored(LogHead { run: other, last_seq: 1, finished: false }));

    // A group whose transaction fails stores nothing and announces nothing, not even the
    // run that was fine: the next event is the next commit's.
    fresh
        .tamper(
            "CREATE FUNCTION refuse_chunk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
        )
        .await;
    fresh
        .tamper(&format!(
            "CREATE TRIGGER refuse_chunk BEFORE INSERT ON log_chunks FOR EACH ROW WHEN (NEW.run_id = {other}) \
             EXECUTE FUNCTION refuse_chunk()"
        ))
        .await;
    let failed = writer.append_logs(&[(run, &[entry(3, b"lost")]), (other, &[entry(2, b"refused")])]).await;
    assert!(failed.is_err(), "the whole group fails");
    assert_eq!(writer.last_seq(run).await.unwrap(), 2);
    writer.append_log(run, &[entry(3, b"again")]).await.unwrap();
    assert_eq!(next_event(&mut events).await, LogEvent::Stored(LogHead { run, last_seq: 3, finished: false }));

    // The final state is announced with the head; a second outcome (ignored) is not.
    let finish = Finish { status: RunStatus::Failed, finished_at_us: 2, exit_code: Some(1), signal: None, error: None };
    writer.finish_run(run, &finish).await.unwrap();
    assert_eq!(next_event(&mut events).await, LogEvent::Stored(LogHead { run, last_seq: 3, finished: true }));
    writer.finish_run(run, &finish).await.unwrap();
    let quiet = writer.insert_run(&new_run("c", 1), u32::MAX).await.unwrap().id;
    writer.finish_run(quiet, &finish).await.unwrap();
    assert_eq!(next_event(&mut events).await, LogEvent::Stored(LogHead { run: quiet, last_seq: 0, finished: true }));

    // The listening connection cut: the listener comes back, says what may be lost, goes on.
    fresh
        .tamper(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .await;
    assert_eq!(next_event(&mut events).await, LogEvent::Missed);
    writer.append_log(other, &[entry(1, b"z")]).await.unwrap_err();
    let third = writer.insert_run(&new_run("d", 1), u32::MAX).await.unwrap().id;
    writer.append_log(third, &[entry(1, b"after the cut")]).await.unwrap();
    assert_eq!(next_event(&mut events).await, LogEvent::Stored(LogHead { run: third, last_seq: 1, finished: false }));
    events.shutdown().await;
}

fn replica(name: &str, instance: &str) -> ReplicaIdentity {
    ReplicaIdentity {
        name: name.into(),
        instance: instance.into(),
        host: format!("host-{name}"),
        boot_id: Some("boot".into()),
        pid: 42,
    }
}

/// Registers a replica that must get its name.
async fn registered(store: &Store, name: &str, instance: &str) -> ReplicaIdentity {
    let identity = replica(name, instance);
    let registration = store.register_replica(&identity, Duration::from_secs(30), 1).await.unwrap();
    assert!(matches!(registration, Registration::Registered { .. }), "{registration:?}");
    identity
}

fn claim<'a>(
    replica: &'a ReplicaIdentity,
    global: u32,
    job_limits: &'a HashMap<String, u32>,
    max: u32,
    holding: &'a [RunId],
) -> Claim<'a> {
    Claim { replica, max_concurrent_runs: global, job_limits, max, holding, now_us: 5 }
}

fn done() -> Finish {
    Finish { status: RunStatus::Succeeded, finished_at_us: 9, exit_code: Some(0), signal: None, error: None }
}

async fn three_replicas_claiming_at_once_never_exceed_the_limits(fresh: Fresh) {
    let store = fresh.store.clone();
    for index in 0..30 {
        store.insert_run(&new_run(["a", "b", "c"][index % 3], index as i64), u32::MAX).await.unwrap();
    }
    let limits: HashMap<String, u32> = [("a".to_string(), 2), ("b".to_string(), 2)].into();
    let mut tasks = Vec::new();
    for index in 0..3 {
        let handle = fresh.reopen().await;
        let identity = registered(&handle, &format!("r{index}"), "i").await;
        let limits = limits.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..2000 {
                let claimed = handle.claim_runs(&claim(&identity, 4, &limits, 2, &[])).await.unwrap();
                // One statement: a consistent picture of what runs on every replica now.
                let running = handle
                    .list_runs(&RunFilter { status: Some(RunStatus::Running), limit: 100, ..RunFilter::default() })
                    .await
                    .unwrap();
                let of = |job: &str| running.iter().filter(|run| run.job == job).count();
                assert!(running.len() <= 4, "{} running at once", running.len());
                assert!(of("a") <= 2 && of("b") <= 2, "a: {}, b: {}", of("a"), of("b"));
                assert!(claimed.iter().all(|run| run.replica.as_deref() == Some(identity.name.as_str())));
                tokio::task::yield_now().await;
                for run in &claimed {
                    handle.finish_run(run.id, &done()).await.unwrap();
                    mine.push(run.id);
                }
                if handle.runs_with_status(RunStatus::Queued).await.unwrap().is_empty() && claimed.is_empty() {
                    break;
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (1..=30).map(RunId).collect::<Vec<_>>(), "every run claimed exactly once");
}

async fn claims_take_the_oldest_runs_unless_their_job_is_at_its_limit(fresh: Fresh) {
    let store = fresh.store.clone();
    let me = registered(&store, "a", "i").await;
    let mut ids = Vec::new();
    for job in ["x", "x", "y", "x", "y"] {
        ids.push(store.insert_run(&new_run(job, 1), u32::MAX).await.unwrap().id);
    }
    let limits: HashMap<String, u32> = [("x".to_string(), 1)].into();
    // The global limit: the next run waits even though its job has room.
    let first = store.claim_runs(&claim(&me, 1, &limits, 10, &[])).await.unwrap();
    assert_eq!(first.iter().map(|run| run.id).collect::<Vec<_>>(), vec![ids[0]]);
    assert_eq!(first[0].status, RunStatus::Running);
    // x is at its limit: its queued runs are passed over, y's are not.
    let more = store.claim_runs(&claim(&me, 10, &limits, 10, &[])).await.unwrap();
    assert_eq!(more.iter().map(|run| run.id).collect::<Vec<_>>(), vec![ids[2], ids[4]]);
    store.finish_run(ids[0], &done()).await.unwrap();
    let next = store.claim_runs(&claim(&me, 10, &limits, 10, &[])).await.unwrap();
    assert_eq!(next.iter().map(|run| run.id).collect::<Vec<_>>(), vec![ids[1]], "the older x first");
    // A draining replica claims nothing.
    store.finish_run(ids[1], &done()).await.unwrap();
    store.set_draining(&me).await.unwrap();
    assert!(store.claim_runs(&claim(&me, 10, &limits, 10, &[])).await.unwrap().is_empty());
    assert!(store.list_replicas().await.unwrap()[0].draining);
}

async fn a_run_held_by_a_replica_is_claimed_by_it_alone_once_it_is_ready(fresh: Fresh) {
    let store = fresh.store.clone();
    let holder = registered(&store, "holder", "i").await;
    let other = registered(&store, "other", "i").await;
    let held = store.insert_run(&NewRun { held_by: Some("holder".into()), ..new_run("a", 1) }, u32::MAX).await.unwrap();
    let plain = store.insert_run(&new_run("a", 2), u32::MAX).await.unwrap();
    let none = HashMap::new();
    let taken = store.claim_runs(&claim(&other, 10, &none, 10, &[held.id])).await.unwrap();
    assert_eq!(taken.iter().map(|run| run.id).collect::<Vec<_>>(), vec![plain.id], "another replica's held run");
    assert!(store.claim_runs(&claim(&holder, 10, &none, 10, &[])).await.unwrap().is_empty(), "not ready yet");
    let taken = store.claim_runs(&claim(&holder, 10, &none, 10, &[held.id])).await.unwrap();
    assert_eq!(taken.iter().map(|run| run.id).collect::<Vec<_>>(), vec![held.id]);
}

async fn a_silent_replica_is_declared_lost_by_exactly_one_survivor(fresh: Fresh) {
    let store = fresh.store.clone();
    let timeout = Duration::from_secs(30);
    for round in 0..5 {
        let name = format!("dying{round}");
        let dying = registered(&store, &name, "old").await;
        let run = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
        let none = HashMap::new();
        assert_eq!(store.claim_runs(&claim(&dying, 100, &none, 1, &[])).await.unwrap().len(), 1);
        let held =
            store.insert_run(&NewRun { held_by: Some(name.clone()), ..new_run("a", 2) }, u32::MAX).await.unwrap();
        let (first, second) = (fresh.reopen().await, fresh.reopen().await);
        let (b, c) =
            (registered(&first, &format!("b{round}"), "i").await, registered(&second, &format!("c{round}"), "i").await);
        // Nobody is silent yet.
        assert!(first.declare_lost(&b, timeout).await.unwrap().is_empty());
        fresh
            .tamper(&format!("UPDATE replicas SET heartbeat_at_us = heartbeat_at_us - 60000000 WHERE name = '{name}'"))
            .await;
        let (by_b, by_c) = tokio::join!(first.declare_lost(&b, timeout), second.declare_lost(&c, timeout));
        let declared: Vec<LostReplica> = by_b.unwrap().into_iter().chain(by_c.unwrap()).collect();
        assert_eq!(declared.len(), 1, "round {round}: {declared:?}");
        assert_eq!(declared[0].name, name);
        assert_eq!(declared[0].running.iter().map(|run| run.id).collect::<Vec<_>>(), vec![run.id]);
        assert_eq!(declared[0].held.iter().map(|run| run.id).collect::<Vec<_>>(), vec![held.id]);
        assert!(!store.heartbeat(&dying).await.unwrap(), "a lost instance learns it from its heartbeat");
        assert!(first.declare_lost(&b, timeout).await.unwrap().is_empty(), "declared once");
        // Its survivor died before it ended the runs: after a timeout, another survivor gets them.
        fresh.tamper(&format!("UPDATE replicas SET lost_at_us = lost_at_us - 60000000 WHERE name = '{name}'")).await;
        let again = second.declare_lost(&c, timeout).await.unwrap();
        assert_eq!(again.iter().map(|lost| lost.running.len()).collect::<Vec<_>>(), vec![1], "{again:?}");
        store.finish_run(run.id, &done()).await.unwrap();
        store.finish_run(held.id, &done()).await.unwrap();
        fresh.tamper(&format!("UPDATE replicas SET lost_at_us = lost_at_us - 60000000 WHERE name = '{name}'")).await;
        assert!(first.declare_lost(&b, timeout).await.unwrap().is_empty(), "nothing left to end");
        assert!(store.list_replicas().await.unwrap().iter().all(|listed| listed.name != name));
        // Its name is free again, for a new instance.
        let again = store.register_replica(&replica(&name, "new"), timeout, 3).await.unwrap();
        assert!(matches!(again, Registration::Registered { previous: Some(_) }), "{again:?}");
    }
}

async fn a_name_in_use_is_refused_and_a_stale_one_is_taken(fresh: Fresh) {
    let store = fresh.store.clone();
    let timeout = Duration::from_secs(30);
    let first = registered(&store, "a", "one").await;
    match store.register_replica(&replica("a", "two"), timeout, 2).await.unwrap() {
        Registration::InUse(holder) => {
            assert_eq!((holder.instance.as_str(), holder.host.as_str(), holder.pid), ("one", "host-a", 42));
            assert!(holder.heartbeat_age_ms < 30_000, "{holder:?}");
        }
        other => panic!("a name in use was taken: {other:?}"),
    }
    assert!(store.heartbeat(&first).await.unwrap());
    fresh.tamper("UPDATE replicas SET heartbeat_at_us = heartbeat_at_us - 60000000").await;
    let second = replica("a", "two");
    assert!(matches!(
        store.register_replica(&second, timeout, 2).await.unwrap(),
        Registration::Registered { previous: Some(_) }
    ));
    assert!(!store.heartbeat(&first).await.unwrap(), "the old instance no longer owns the row");
    assert!(store.heartbeat(&second).await.unwrap());
    store.remove_replica(&first).await.unwrap();
    assert_eq!(store.list_replicas().await.unwrap().len(), 1, "only its own instance removes a row");
    store.remove_replica(&second).await.unwrap();
    assert!(store.list_replicas().await.unwrap().is_empty());
}

async fn a_cancel_reaches_a_run_in_every_state(fresh: Fresh) {
    let store = fresh.store.clone();
    let timeout = Duration::from_secs(30);
    let none = HashMap::new();
    let live = registered(&store, "live", "i").await;
    let dead = registered(&store, "dead", "i").await;
    let queued = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    assert_eq!(store.request_cancel(queued.id, timeout, 7).await.unwrap(), CancelRequest::CancelledWhileQueued);
    assert_eq!(store.run(queued.id).await.unwrap().unwrap().status, RunStatus::Cancelled);
    assert_eq!(store.request_cancel(queued.id, timeout, 8).await.unwrap(), CancelRequest::AlreadyFinished);

    let on_live = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    store.claim_runs(&claim(&live, 10, &none, 1, &[])).await.unwrap();
    assert!(store.cancel_requests(&live).await.unwrap().is_empty());
    assert_eq!(
        store.request_cancel(on_live.id, timeout, 7).await.unwrap(),
        CancelRequest::Requested { replica: "live".into() }
    );
    assert_eq!(store.cancel_requests(&live).await.unwrap(), vec![on_live.id]);
    assert_eq!(store.run(on_live.id).await.unwrap().unwrap().status, RunStatus::Running, "the owner ends it");

    let on_dead = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    store.claim_runs(&claim(&dead, 10, &none, 1, &[])).await.unwrap();
    store.append_log(on_dead.id, &[entry(1, b"working")]).await.unwrap();
    fresh.tamper("UPDATE replicas SET heartbeat_at_us = heartbeat_at_us - 60000000 WHERE name = 'dead'").await;
    assert_eq!(
        store.request_cancel(on_dead.id, timeout, 7).await.unwrap(),
        CancelRequest::EndedLost { replica: Some("dead".into()) }
    );
    let ended = store.run(on_dead.id).await.unwrap().unwrap();
    assert_eq!(ended.status, RunStatus::Lost);
    let log = store.read_log(on_dead.id, 0, 10, usize::MAX).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].stream, LogStream::System);
    assert!(log[1].text().contains("replica dead was not responding"), "{}", log[1].text());
    assert_eq!(store.request_cancel(RunId(999), timeout, 7).await.unwrap(), CancelRequest::NotFound);
}

async fn the_queue_bound_is_counted_in_the_database_across_handles(fresh: Fresh) {
    let handles = [fresh.store.clone(), fresh.reopen().await];
    let attempts = (0..12).map(|index| {
        let store = handles[index % 2].clone();
        async move { store.insert_run(&new_run("a", 1), 5).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let queued = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(queued, 5);
    assert!(results
        .iter()
        .filter_map(|result| result.as_ref().err())
        .all(|error| matches!(error, StoreError::QueueFull(5))));
    let me = registered(&fresh.store, "a", "i").await;
    fresh.store.claim_runs(&claim(&me, 10, &HashMap::new(), 1, &[])).await.unwrap();
    assert!(fresh.store.insert_run(&new_run("a", 1), 5).await.is_ok(), "a claimed run leaves room");
}

async fn leftovers_are_this_names_runs_those_from_before_replicas_and_those_of_no_replica(fresh: Fresh) {
    let store = fresh.store.clone();
    let none = HashMap::new();
    let mine = registered(&store, "mine", "old").await;
    let theirs = registered(&store, "theirs", "i").await;
    let my_run = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    store.claim_runs(&claim(&mine, 10, &none, 1, &[])).await.unwrap();
    let their_run = store.insert_run(&new_run("a", 2), u32::MAX).await.unwrap();
    store.claim_runs(&claim(&theirs, 10, &none, 1, &[])).await.unwrap();
    let old_run = store.insert_run(&new_run("a", 3), u32::MAX).await.unwrap();
    store.mark_running(old_run.id, 4).await.unwrap();
    let held = store.insert_run(&NewRun { held_by: Some("mine".into()), ..new_run("a", 5) }, u32::MAX).await.unwrap();
    store.insert_run(&NewRun { held_by: Some("theirs".into()), ..new_run("a", 6) }, u32::MAX).await.unwrap();
    // A replica no row names any more (its runs copied by `migrate-store --allow-live` from a
    // server that died, or a row removed by hand): nobody else will ever end its runs.
    let gone = registered(&store, "gone", "g").await;
    let orphan = store.insert_run(&new_run("a", 7), u32::MAX).await.unwrap();
    store.claim_runs(&claim(&gone, 10, &none, 1, &[])).await.unwrap();
    let orphan_held =
        store.insert_run(&NewRun { held_by: Some("gone".into()), ..new_run("a", 8) }, u32::MAX).await.unwrap();
    store.remove_replica(&gone).await.unwrap();
    let left = store.leftovers("mine").await.unwrap();
    assert_eq!(left.running.iter().map(|run| run.id).collect::<Vec<_>>(), vec![my_run.id, old_run.id, orphan.id]);
    assert_eq!(left.held.iter().map(|run| run.id).collect::<Vec<_>>(), vec![held.id, orphan_held.id]);
    assert!(!left.running.iter().any(|run| run.id == their_run.id));
}

async fn a_backward_read_pages_from_any_point_to_the_start_without_gap_or_overlap(fresh: Fresh) {
    let store = fresh.store.clone();
    let run = store.insert_run(&new_run("a", 1), u32::MAX).await.unwrap();
    // Chunks of uneven sizes, and long lines that a byte bound cuts.
    let entries: Vec<LogEntry> = (1..=3000)
        .map(|seq| {
            if seq % 1000 == 500 {
                entry(seq, &vec![b'L'; 100_000])
            } else {
                entry(seq, format!("line {seq}").as_bytes())
            }
        })
        .collect();
    for chunk in entries.chunks(337) {
        store.append_log(run.id, chunk).await.unwrap();
    }
    let seqs = |page: &[LogEntry]| page.iter().map(|e| e.seq).collect::<Vec<_>>();

    let last = store.read_log_before(run.id, 0, u64::MAX, 5, usize::MAX).await.unwrap();
    assert_eq!(seqs(&last), (2996..=3000).collect::<Vec<_>>(), "`before` past the head: the last entries");
    let middle = store.read_log_before(run.id, 0, 1012, 20, usize::MAX).await.unwrap();
    assert_eq!(seqs(&middle), (992..=1011).collect::<Vec<_>>(), "across a chunk boundary, ascending");
    assert_eq!(middle[0].bytes, &b"line 992"[..]);
    let between = store.read_log_before(run.id, 1005, 1012, 20, usize::MAX).await.unwrap();
    assert_eq!(seqs(&between), (1006..=1011).collect::<Vec<_>>(), "with `after`: only after < seq < before");
    for (after, before) in [(0, 0), (0, 1), (7, 8), (9, 3), (u64::MAX, u64::MAX)] {
        assert!(
            store.read_log_before(run.id, after, before, 10, usize::MAX).await.unwrap().is_empty(),
            "{after}..{before}"
        );
    }
    assert_eq!(seqs(&store.read_log_before(run.id, 0, 2, 10, usize::MAX).await.unwrap()), vec![1]);
    let cut = store.read_log_before(run.id, 0, 1503, 1000, 90_000).await.unwrap();
    assert_eq!(seqs(&cut), vec![1501, 1502], "a byte bound keeps the entries nearest `before`");
    let alone = store.read_log_before(run.id, 0, 1501, 1000, 10).await.unwrap();
    assert_eq!(seqs(&alone), vec![1500], "a line larger than the bound comes alone");

    // Paging back from the head reads every entry once.
    let (mut before, mut seen) = (u64::MAX, Vec::new());
    loop {
        let page = store.read_log_before(run.id, 0, before, 250, 120_000).await.unwrap();
        let Some(first) = page.first() else { break };
        before = first.seq;
        seen.splice(0..0, seqs(&page));
    }
    assert_eq!(seen, (1..=3000).collect::<Vec<_>>());
    let other = store.insert_run(&new_run("b", 2), u32::MAX).await.unwrap();
    assert!(store.read_log_before(other.id, 0, 10, 10, usize::MAX).await.unwrap().is_empty(), "another run's log");
}

story!(
    a_backward_read_pages_from_any_point_to_the_start_without_gap_or_overlap,
    leftovers_are_this_names_runs_those_from_before_replicas_and_those_of_no_replica,
    stream_tickets_are_taken_once_on_any_handle_and_capped_in_the_database,
    log_heads_say_how_far_each_run_is_stored_and_whether_it_ended,
    commits_notify_their_heads_and_a_rolled_back_group_notifies_nothing,
    three_replicas_claiming_at_once_never_exceed_the_limits,
    claims_take_the_oldest_runs_unless_their_job_is_at_its_limit,
    a_run_held_by_a_replica_is_claimed_by_it_alone_once_it_is_ready,
    a_silent_replica_is_declared_lost_by_exactly_one_survivor,
    a_name_in_use_is_refused_and_a_stale_one_is_taken,
    a_cancel_reaches_a_run_in_every_state,
    the_queue_bound_is_counted_in_the_database_across_handles,
    concurrent_audit_appends_from_two_handles_make_one_chain,
    two_writers_of_one_log_cannot_both_extend_it,
    runs_go_through_their_lifecycle,
    listing_filters_and_paginates_newest_first,
    log_lines_keep_their_bytes_and_order,
    one_transaction_appends_to_many_runs_and_refuses_only_the_bad_append,
    retention_deletes_only_old_finished_runs,
    run_listing_can_be_limited_to_visible_jobs,
    tokens_are_found_by_hash_used_and_revoked,
    tokens_made_with_a_token_go_with_it,
    a_log_read_is_bounded_by_bytes_and_still_reads_every_entry_once,
    the_audit_chain_verifies_and_breaks_on_tampering,
    records_written_before_action_codes_still_verify_and_filter,
    the_signed_head_moves_only_from_a_head_that_signs_the_chain,
    reopening_keeps_everything,
    a_running_run_keeps_where_its_processes_are_across_a_reopen,
);
