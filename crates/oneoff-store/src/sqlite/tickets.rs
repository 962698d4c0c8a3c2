//! Stream tickets on SQLite: the write lock (`BEGIN IMMEDIATE`) makes counting and adding one step.

use oneoff_core::RunId;

use super::SqliteStore;
use crate::tickets::{decode_principal, encode_principal, refusal};
use crate::{NewStreamTicket, StoreError, StreamTicketRecord, TicketCaps, TicketRefusal};

impl SqliteStore {
    pub(crate) async fn issue_stream_ticket(
        &self,
        ticket: &NewStreamTicket,
        caps: TicketCaps,
        now_us: i64,
    ) -> Result<Result<(), TicketRefusal>, StoreError> {
        self.write(async {
            let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query("DELETE FROM stream_tickets WHERE expires_at_us <= ?")
                .bind(now_us)
                .execute(&mut *transaction)
                .await?;
            let (outstanding, of_user): (i64, i64) =
                sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(user_name = ?), 0) FROM stream_tickets")
                    .bind(&ticket.principal.user)
                    .fetch_one(&mut *transaction)
                    .await?;
            if let Some(refused) = refusal(caps, outstanding, of_user) {
                transaction.commit().await?;
                return Ok(Err(refused));
            }
            sqlx::query(
                "INSERT INTO stream_tickets (hash, run_id, user_name, principal, expires_at_us) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&ticket.hash)
            .bind(ticket.run.0)
            .bind(&ticket.principal.user)
            .bind(encode_principal(&ticket.principal))
            .bind(ticket.expires_at_us)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            Ok(Ok(()))
        })
        .await
    }

    pub(crate) async fn take_stream_ticket(&self, hash: &str) -> Result<Option<StreamTicketRecord>, StoreError> {
        let row: Option<(i64, String, i64)> = self
            .write(async {
                Ok(sqlx::query_as(
                    "DELETE FROM stream_tickets WHERE hash = ? RETURNING run_id, principal, expires_at_us",
                )
                .bind(hash)
                .fetch_optional(self.pool())
                .await?)
            })
            .await?;
        row.map(|(run, principal, expires_at_us)| {
            Ok(StreamTicketRecord { run: RunId(run), principal: decode_principal(&principal)?, expires_at_us })
        })
        .transpose()
    }
}
