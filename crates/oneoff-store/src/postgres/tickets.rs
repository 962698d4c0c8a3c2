//! Stream tickets on PostgreSQL: a transaction-level advisory lock makes counting and adding one step
//! across replicas (READ COMMITTED alone would let two replicas each see room for one more).

use oneoff_core::RunId;

use super::PgStore;
use crate::tickets::{decode_principal, encode_principal, refusal};
use crate::{NewStreamTicket, StoreError, StreamTicketRecord, TicketCaps, TicketRefusal};

/// The advisory lock key under which tickets are counted and added ("oneoff:t").
const TICKET_LOCK: i64 = 0x6f6e_656f_6666_3a74;

impl PgStore {
    pub(crate) async fn issue_stream_ticket(
        &self,
        ticket: &NewStreamTicket,
        caps: TicketCaps,
        now_us: i64,
    ) -> Result<Result<(), TicketRefusal>, StoreError> {
        self.write(async {
            let mut transaction = self.pool().begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(TICKET_LOCK).execute(&mut *transaction).await?;
            sqlx::query("DELETE FROM stream_tickets WHERE expires_at_us <= $1")
                .bind(now_us)
                .execute(&mut *transaction)
                .await?;
            let (outstanding, of_user): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE user_name = $1) FROM stream_tickets",
            )
            .bind(&ticket.principal.user)
            .fetch_one(&mut *transaction)
            .await?;
            if let Some(refused) = refusal(caps, outstanding, of_user) {
                transaction.commit().await?;
                return Ok(Err(refused));
            }
            sqlx::query(
                "INSERT INTO stream_tickets (hash, run_id, user_name, principal, expires_at_us) VALUES ($1, $2, $3, $4, $5)",
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
                    "DELETE FROM stream_tickets WHERE hash = $1 RETURNING run_id, principal, expires_at_us",
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
