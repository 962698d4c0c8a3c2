//! Pages of raw rows in and out of SQLite, for copying a store (see `copy.rs`).

use oneoff_core::audit::SignedHead;
use oneoff_core::RunStatus;
use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use crate::copy::{rows_within, Kind, Table, Value};
use crate::StoreError;

impl SqliteStore {
    pub(crate) async fn count_rows(&self, table: &Table) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", table.name)).fetch_one(self.pool()).await?)
    }

    pub(crate) async fn count_live_runs(&self) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(SUM(status = ?1), 0), COALESCE(SUM(status = ?2), 0) FROM runs WHERE status IN (?1, ?2)",
        )
        .bind(RunStatus::Running.as_str())
        .bind(RunStatus::Queued.as_str())
        .fetch_one(self.pool())
        .await?)
    }

    /// The rows with a key after `after`, in key order: at most `table.page_rows` of them, and
    /// at most `page_bytes` of a large column (at least one row).
    pub(crate) async fn read_page(
        &self,
        table: &Table,
        after: Option<&[Value]>,
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let key = quoted(table.key_columns());
        let mut rows = table.page_rows as i64;
        if let Some(large) = &table.large {
            // The lengths first: `length` of a value does not load it.
            let mut query =
                QueryBuilder::<Sqlite>::new(format!("SELECT length(\"{}\") FROM {} ", large.name, table.name));
            push_after(&mut query, &key, after);
            query.push(format!("ORDER BY {key} LIMIT ")).push_bind(rows);
            let sizes: Vec<i64> = query.build_query_scalar().fetch_all(self.pool()).await?;
            rows = rows_within(&sizes, large.page_bytes);
            if rows == 0 {
                return Ok(Vec::new());
            }
        }
        let columns = quoted(table.columns.iter().map(|(name, _)| *name));
        let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {columns} FROM {} ", table.name));
        push_after(&mut query, &key, after);
        query.push(format!("ORDER BY {key} LIMIT ")).push_bind(rows);
        let found = query.build().fetch_all(self.pool()).await?;
        found.iter().map(|row| row_values(table, row)).collect()
    }

    /// Inserts rows as they are, ids included, in one transaction; the values move into the
    /// statement (a page of chunks is in memory once).
    pub(crate) async fn write_page(&self, table: &Table, rows: Vec<Vec<Value>>) -> Result<(), StoreError> {
        let columns = quoted(table.columns.iter().map(|(name, _)| *name));
        let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        QueryBuilder::<Sqlite>::new(format!("INSERT INTO {} ({columns}) ", table.name))
            .push_values(rows, |mut builder, row| {
                for value in row {
                    push_value(&mut builder, value);
                }
            })
            .build()
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    pub(crate) async fn write_audit_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_head (singleton, records, hash, mac) VALUES (1, ?, ?, ?)")
            .bind(head.head.records)
            .bind(&head.head.hash)
            .bind(&head.mac)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The highest id this table has ever handed out (AUTOINCREMENT keeps it in
    /// `sqlite_sequence`, past rows deleted since).
    pub(crate) async fn highest_id(&self, table: &Table) -> Result<i64, StoreError> {
        let given: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
            .bind(table.name)
            .fetch_optional(self.pool())
            .await?;
        let left: Option<i64> =
            sqlx::query_scalar(&format!("SELECT MAX(id) FROM {}", table.name)).fetch_one(self.pool()).await?;
        Ok(given.unwrap_or(0).max(left.unwrap_or(0)))
    }

    /// Makes the next id handed out at least `highest + 1`.
    pub(crate) async fn raise_next_id(&self, table: &Table, highest: i64) -> Result<(), StoreError> {
        let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let updated = sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?")
            .bind(highest)
            .bind(table.name)
            .execute(&mut *transaction)
            .await?;
        if updated.rows_affected() == 0 && highest > 0 {
            sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)")
                .bind(table.name)
                .bind(highest)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}

/// `WHERE (key columns) > (values) `, when there is an `after`.
fn push_after(query: &mut QueryBuilder<'_, Sqlite>, key: &str, after: Option<&[Value]>) {
    if let Some(after) = after {
        query.push(format!("WHERE ({key}) > ("));
        let mut values = query.separated(", ");
        for value in after {
            push_value(&mut values, value.clone());
        }
        query.push(") ");
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(|name| format!("\"{name}\"")).collect::<Vec<_>>().join(", ")
}

fn push_value<'args, Sep: std::fmt::Display>(values: &mut Separated<'_, 'args, Sqlite, Sep>, value: Value) {
    match value {
        Value::Null => values.push("NULL"),
        Value::Int(number) => values.push_bind(number),
        Value::Text(text) => values.push_bind(text),
        Value::Blob(bytes) => values.push_bind(bytes),
    };
}

fn row_values(table: &Table, row: &SqliteRow) -> Result<Vec<Value>, StoreError> {
    let mut values = Vec::with_capacity(table.columns.len());
    for (index, (_, kind)) in table.columns.iter().enumerate() {
        let value = match kind {
            Kind::Int => row.try_get::<Option<i64>, _>(index)?.map(Value::Int),
            Kind::Text => row.try_get::<Option<String>, _>(index)?.map(Value::Text),
            Kind::Blob => row.try_get::<Option<Vec<u8>>, _>(index)?.map(Value::Blob),
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(values)
}
