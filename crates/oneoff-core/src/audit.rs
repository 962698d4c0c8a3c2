//! The audit trail's integrity: every record carries the hash of the one before it, so a
//! deleted or edited record breaks the chain at a place [`verify`] names.

use sha2::{Digest, Sha256};

/// The hash of the first record's predecessor.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as stored: an entry, its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields that make a record, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_us: i64,
    /// The user, or `anonymous`.
    pub actor: String,
    /// How the actor was identified (`token:NAME`, `trusted_headers`, `anonymous`).
    pub source: String,
    /// The client address chain: the TCP peer, then X-Forwarded-For as received.
    pub client: String,
    /// `run.start`, `run.cancel`, `token.create`, `token.revoke`, or `denied.<action>`.
    pub action: String,
    pub job: Option<String>,
    pub run_id: Option<i64>,
    /// JSON with the details (params with secrets redacted, the resolved argv, a token's name).
    pub detail: String,
}

/// The hash of a record with id `id` following `prev_hash`. Every field is length-prefixed,
/// so no two different records share an input.
pub fn chain_hash(id: i64, entry: &AuditEntry, prev_hash: &str) -> String {
    let mut hasher = Sha256::new();
    let job = entry.job.clone().unwrap_or_default();
    let run = entry.run_id.map(|run| run.to_string()).unwrap_or_default();
    let fields = [
        id.to_string(),
        entry.at_us.to_string(),
        entry.actor.clone(),
        entry.source.clone(),
        entry.client.clone(),
        entry.action.clone(),
        job,
        run,
        entry.detail.clone(),
        prev_hash.to_string(),
    ];
    for field in &fields {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub id: i64,
    pub reason: String,
}

/// Checks records in id order; returns the first break.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Result<usize, ChainBreak> {
    let mut previous_hash = GENESIS.to_string();
    let mut previous_id = 0;
    let mut count = 0;
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
        if chain_hash(record.id, &record.entry, &record.prev_hash) != record.hash {
            return Err(ChainBreak {
                id: record.id,
                reason: "its content does not match its hash: it was edited".into(),
            });
        }
        previous_hash = record.hash.clone();
        previous_id = record.id;
        count += 1;
    }
    Ok(count)
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
                action: "run.start".into(),
                job: Some("backfill".into()),
                run_id: Some(id),
                detail: "{}".into(),
            };
            let hash = chain_hash(id, &entry, &prev);
            records.push(AuditRecord { id, entry, prev_hash: prev.clone(), hash: hash.clone() });
            prev = hash;
        }
        records
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn edits_and_deletions_are_found() {
        let mut edited = chain(5);
        edited[2].entry.actor = "mallory".into();
        assert_eq!(verify(&edited).unwrap_err().id, 3);

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
