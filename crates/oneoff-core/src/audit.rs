//! The audit trail's integrity: every record carries the hash of the one before it, so a
//! deleted or edited record breaks the chain at a place [`verify`] names.
//!
//! A chain alone cannot see its end cut off, nor a rewrite that recomputes every hash after
//! the edit; [`anchor`] adds what can (a head signed with a key kept outside the database,
//! and checkpoints kept in the server log). [`action`] holds the closed set of audited
//! actions, [`bounds`] what a caller can put in a record, [`denials`] the summarising of
//! repeated refusals.

mod action;
pub mod anchor;
mod bounds;
pub mod denials;

use sha2::{Digest, Sha256};

pub use action::{AuditAction, Denial};
pub use anchor::{AuditKey, ChainHead, SignedHead};
pub use bounds::bound_client_chain;

/// The hash of the first record's predecessor.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as stored: an entry, its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
    pub format: RecordFormat,
    pub prev_hash: String,
    pub hash: String,
}

/// How a record's hash was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    /// Written before actions were codes: the action text as stored (prose for some
    /// denials) was hashed, and there was no message (the entry's is made up on reading).
    Legacy { stored_action: String },
    /// The action's code and the message are hashed.
    Coded,
}

/// The fields that make a record, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_us: i64,
    /// The user, or `anonymous`.
    pub actor: String,
    /// How the actor was identified (`token:NAME`, `trusted_headers`, `anonymous`).
    pub source: String,
    /// The client address chain: the TCP peer, then X-Forwarded-For as received (bounded).
    pub client: String,
    pub action: AuditAction,
    /// What happened, in a sentence for people ("carol may not cancel job `backfill`").
    pub message: String,
    pub job: Option<String>,
    pub run_id: Option<i64>,
    /// JSON with the details (params with secrets redacted, the resolved argv, a token's name).
    pub detail: String,
}

/// The hash of a record with id `id` following `prev_hash`. Every field is length-prefixed,
/// so no two different records share an input; coded records start with a version field
/// that no legacy record's first field (its id) can equal.
pub fn chain_hash(id: i64, entry: &AuditEntry, format: &RecordFormat, prev_hash: &str) -> String {
    let mut hasher = Sha256::new();
    let job = entry.job.clone().unwrap_or_default();
    let run = entry.run_id.map(|run| run.to_string()).unwrap_or_default();
    let mut fields = Vec::with_capacity(12);
    let action = match format {
        RecordFormat::Legacy { stored_action } => stored_action.clone(),
        RecordFormat::Coded => {
            fields.push("v2".to_string());
            entry.action.code()
        }
    };
    fields.extend([
        id.to_string(),
        entry.at_us.to_string(),
        entry.actor.clone(),
        entry.source.clone(),
        entry.client.clone(),
        action,
    ]);
    if *format == RecordFormat::Coded {
        fields.push(entry.message.clone());
    }
    fields.extend([job, run, entry.detail.clone(), prev_hash.to_string()]);
    for field in &fields {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    crate::hex::encode(&hasher.finalize())
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub id: i64,
    pub reason: String,
}

/// Checks records in id order; returns where the chain ends, or the first break.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Result<ChainHead, ChainBreak> {
    let mut previous_hash = GENESIS.to_string();
    let mut previous_id = 0;
    let mut count: i64 = 0;
    for record in records {
        if record.id != previous_id + 1 {
            return Err(ChainBreak {
                id: record.id,
                reason: format!("record {} follows record {previous_id}: records in between were deleted", record.id),
            });
        }
        if record.prev_hash != previous_hash {
            return Err(ChainBreak { id: record.id, reason: "its link to the previous record does not match".into() });
        }
        if chain_hash(record.id, &record.entry, &record.format, &record.prev_hash) != record.hash {
            return Err(ChainBreak {
                id: record.id,
                reason: "its content does not match its hash: it was edited".into(),
            });
        }
        previous_hash = record.hash.clone();
        previous_id = record.id;
        count += 1;
    }
    Ok(ChainHead { records: count, hash: previous_hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(count: i64) -> Vec<AuditRecord> {
        let mut records = Vec::new();
        let mut prev = GENESIS.to_string();
        for id in 1..=count {
            let entry = AuditEntry {
                at_us: id * 1000,
                actor: "alice".into(),
                source: "trusted_headers".into(),
                client: "10.0.0.1".into(),
                action: AuditAction::RunStart,
                message: format!("alice started run {id}"),
                job: Some("backfill".into()),
                run_id: Some(id),
                detail: "{}".into(),
            };
            let format =
                if id < 3 { RecordFormat::Legacy { stored_action: "run.start".into() } } else { RecordFormat::Coded };
            let hash = chain_hash(id, &entry, &format, &prev);
            records.push(AuditRecord { id, entry, format, prev_hash: prev.clone(), hash: hash.clone() });
            prev = hash;
        }
        records
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = chain(5);
        assert_eq!(verify(&records), Ok(ChainHead { records: 5, hash: records[4].hash.clone() }));
        assert_eq!(verify(&[]), Ok(ChainHead { records: 0, hash: GENESIS.into() }));
    }

    #[test]
    fn edits_and_deletions_are_found() {
        let mut edited = chain(5);
        edited[2].entry.actor = "mallory".into();
        assert_eq!(verify(&edited).unwrap_err().id, 3);
        let mut reworded = chain(5);
        reworded[3].entry.message = "nothing happened".into();
        assert_eq!(verify(&reworded).unwrap_err().id, 4, "the message of a coded record is hashed");

        let mut deleted = chain(5);
        deleted.remove(1);
        let broken = verify(&deleted).unwrap_err();
        assert_eq!(broken.id, 3);
        assert!(broken.reason.contains("deleted"));

        let mut relinked = chain(5);
        relinked.remove(1);
        for (index, record) in relinked.iter_mut().enumerate() {
            record.id = index as i64 + 1;
        }
        assert!(verify(&relinked).is_err(), "renumbering after a deletion breaks the hashes");
    }
}
