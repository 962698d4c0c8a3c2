//! Anchors of the audit chain outside the database, for what a hash chain alone cannot see:
//! someone with write access to the file who deletes the last records, or edits one and
//! recomputes every hash after it, leaves a chain that verifies.
//!
//! Two anchors, usable together:
//! - a **signed head**: with an audit key (never stored in the database), every append
//!   also stores an HMAC-SHA256 of the chain's length and last hash. Without the key nobody
//!   can make a head that matches a shortened or re-hashed chain;
//! - **checkpoints**: the length and last hash, written to the server log (signed with the
//!   key when there is one) and checked later with [`check_checkpoint`]: the chain must
//!   still hold that record at that place.

use std::fmt;

use ring::hmac;

use super::AuditRecord;

/// Fewest bytes an audit key may have: HMAC-SHA256's own output size.
pub const MIN_KEY_BYTES: usize = 32;

/// The secret behind signed heads and checkpoints. Its `Debug` never shows it.
#[derive(Clone)]
pub struct AuditKey(hmac::Key);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// Where a chain ends: how many records it has and the hash of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub records: i64,
    /// [`super::GENESIS`] for an empty chain.
    pub hash: String,
}

/// A head and the MAC the audit key gave it, as stored next to the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub head: ChainHead,
    pub mac: String,
}

impl AuditKey {
    /// A key from its bytes (a file's content or an environment variable, trailing
    /// whitespace removed); `from` names where it came from in the error.
    pub fn new(bytes: &[u8], from: &str) -> Result<AuditKey, String> {
        let trimmed = bytes.trim_ascii_end();
        if trimmed.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the audit key in {from} has {} bytes; it needs at least {MIN_KEY_BYTES} random bytes (for example the output of `openssl rand -hex 32`)",
                trimmed.len()
            ));
        }
        Ok(AuditKey(hmac::Key::new(hmac::HMAC_SHA256, trimmed)))
    }

    /// The MAC stored with the head after every append.
    pub fn sign_head(&self, head: &ChainHead) -> SignedHead {
        SignedHead { head: head.clone(), mac: self.mac("head", head) }
    }

    /// The MAC written with a checkpoint to the server log. Its own label keeps a
    /// checkpoint from being passed off as a stored head, and the other way round.
    pub fn sign_checkpoint(&self, head: &ChainHead) -> String {
        self.mac("checkpoint", head)
    }

    /// Whether `mac` is this key's MAC of a checkpoint at `head`.
    pub fn checkpoint_is_signed(&self, head: &ChainHead, mac: &str) -> bool {
        verify_mac(&self.0, "checkpoint", head, mac)
    }

    /// Whether a stored signed head was made by this key.
    pub fn head_is_signed(&self, signed: &SignedHead) -> bool {
        verify_mac(&self.0, "head", &signed.head, &signed.mac)
    }

    fn mac(&self, label: &str, head: &ChainHead) -> String {
        crate::hex::encode(hmac::sign(&self.0, &mac_input(label, head)).as_ref())
    }
}

fn mac_input(label: &str, head: &ChainHead) -> Vec<u8> {
    format!("oneoff-audit-{label}\n{}\n{}", head.records, head.hash).into_bytes()
}

fn verify_mac(key: &hmac::Key, label: &str, head: &ChainHead, mac: &str) -> bool {
    let Some(tag) = crate::hex::decode(mac) else { return false };
    hmac::verify(key, &mac_input(label, head), &tag).is_ok()
}

/// Whether the chain was signed before: it holds an `audit.anchor` record, written only when
/// a server first signed it. Such a chain without a signed head had its head deleted.
pub fn was_signed(chain: &[AuditRecord]) -> bool {
    chain.iter().any(|record| record.entry.action == super::AuditAction::AuditAnchor)
}

/// Checks a verified chain's real head against the head stored with the key's MAC.
/// `signed_before` ([`was_signed`]) tells a deleted head from a chain never signed.
pub fn check_signed_head(
    key: &AuditKey,
    stored: Option<&SignedHead>,
    actual: &ChainHead,
    signed_before: bool,
) -> Result<(), String> {
    let Some(stored) = stored else {
        if signed_before {
            return Err(format!(
                "the signed head was deleted: records may have been cut from the end (the chain of {} records holds an audit.anchor record, so it was signed before)",
                actual.records
            ));
        }
        if actual.records == 0 {
            return Ok(());
        }
        return Err(format!(
            "the chain has {} records but no signed head: it was deleted, or the records were written without the audit key",
            actual.records
        ));
    };
    if !key.head_is_signed(stored) {
        return Err("the signed head's MAC does not match the audit key: it was forged, or the key changed".into());
    }
    if stored.head == *actual {
        return Ok(());
    }
    if stored.head.records > actual.records {
        return Err(format!(
            "the signed head says {} records but the chain has {}: records were deleted from its end",
            stored.head.records, actual.records
        ));
    }
    Err(format!(
        "the signed head says {} records ending in {} but the chain ends in {} after {} records: the chain was rewritten and re-hashed, or written without the audit key",
        stored.head.records,
        short(&stored.head.hash),
        short(&actual.hash),
        actual.records
    ))
}

/// Whether a verified chain still holds the checkpoint `hash` (at `records`, when given).
/// A record's hash covers its id, so a found hash is at the place it was checkpointed.
pub fn check_checkpoint(chain: &[AuditRecord], records: Option<i64>, hash: &str) -> Result<i64, String> {
    if let Some(found) = chain.iter().find(|record| record.hash.eq_ignore_ascii_case(hash.trim())) {
        return match records {
            Some(expected) if expected != found.id => Err(format!(
                "the checkpoint's hash is record {}'s, not record {expected}'s: the checkpoint was copied wrong",
                found.id
            )),
            _ => Ok(found.id),
        };
    }
    let length = chain.len() as i64;
    Err(match records {
        Some(expected) if expected > length => format!(
            "the chain has {length} records; the checkpoint was taken at {expected}: records were deleted from its end"
        ),
        Some(expected) => format!(
            "record {expected} does not have the checkpoint's hash {}: the chain was rewritten at or before record {expected} and re-hashed",
            short(hash)
        ),
        None => format!("no record has the hash {}: the chain was rewritten or cut before it", short(hash)),
    })
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AuditKey {
        AuditKey::new(&[byte; 32], "test").unwrap()
    }

    fn head(records: i64, hash: &str) -> ChainHead {
        ChainHead { records, hash: hash.into() }
    }

    #[test]
    fn short_keys_are_refused_with_a_way_out() {
        let error = AuditKey::new(b"secret\n", "ONEOFF_AUDIT_KEY").unwrap_err();
        assert!(error.contains("ONEOFF_AUDIT_KEY has 6 bytes") && error.contains("openssl rand"), "{error}");
        assert_eq!(format!("{:?}", key(1)), "AuditKey(<redacted>)");
    }

    #[test]
    fn a_signed_head_catches_a_cut_or_rewritten_chain() {
        let signed = key(1).sign_head(&head(5, "e5"));
        assert_eq!(check_signed_head(&key(1), Some(&signed), &head(5, "e5"), false), Ok(()));
        assert!(check_signed_head(&key(1), Some(&signed), &head(3, "c3"), false)
            .unwrap_err()
            .contains("deleted from its end"));
        assert!(check_signed_head(&key(1), Some(&signed), &head(5, "ff"), false).unwrap_err().contains("rewritten"));
        assert!(check_signed_head(&key(2), Some(&signed), &head(5, "e5"), false).unwrap_err().contains("forged"));
        let forged = SignedHead { head: head(3, "c3"), mac: signed.mac.clone() };
        assert!(
            check_signed_head(&key(1), Some(&forged), &head(3, "c3"), false).is_err(),
            "a MAC is bound to its head"
        );
        assert!(check_signed_head(&key(1), None, &head(2, "b2"), false).unwrap_err().contains("no signed head"));
        assert_eq!(check_signed_head(&key(1), None, &head(0, super::super::GENESIS), false), Ok(()));
        let deleted = check_signed_head(&key(1), None, &head(7, "g7"), true).unwrap_err();
        assert!(deleted.contains("the signed head was deleted: records may have been cut from the end"), "{deleted}");
    }

    #[test]
    fn a_checkpoint_is_held_only_by_the_record_it_was_taken_at() {
        use super::super::{chain_hash, AuditAction, AuditEntry, RecordFormat, GENESIS};
        let mut chain = Vec::new();
        let mut previous = GENESIS.to_string();
        for id in 1..=4 {
            let entry = AuditEntry {
                at_us: id,
                actor: "alice".into(),
                source: "anonymous".into(),
                client: "::1".into(),
                action: AuditAction::RunStart,
                message: String::new(),
                job: None,
                run_id: Some(id),
                detail: "{}".into(),
            };
            let hash = chain_hash(id, &entry, &RecordFormat::Coded, &previous);
            let prev_hash = std::mem::replace(&mut previous, hash.clone());
            chain.push(AuditRecord { id, entry, format: RecordFormat::Coded, prev_hash, hash });
        }
        let third = chain[2].hash.clone();
        assert_eq!(check_checkpoint(&chain, Some(3), &third), Ok(3));
        assert_eq!(check_checkpoint(&chain, None, &third.to_ascii_uppercase()), Ok(3));
        assert!(check_checkpoint(&chain, Some(2), &third).unwrap_err().contains("copied wrong"));
        assert!(check_checkpoint(&chain[..2], Some(3), &third).unwrap_err().contains("deleted from its end"));
        assert!(check_checkpoint(&chain, Some(3), "beef").unwrap_err().contains("rewritten at or before record 3"));
        assert!(check_checkpoint(&chain, None, "beef").unwrap_err().contains("no record has the hash"));
    }

    #[test]
    fn checkpoint_and_head_macs_are_not_interchangeable() {
        let at = head(7, "abc");
        let checkpoint = key(1).sign_checkpoint(&at);
        assert!(key(1).checkpoint_is_signed(&at, &checkpoint));
        assert!(!key(1).checkpoint_is_signed(&head(8, "abc"), &checkpoint));
        assert!(!key(1).head_is_signed(&SignedHead { head: at.clone(), mac: checkpoint }));
        assert!(!key(1).checkpoint_is_signed(&at, "not hex"));
    }
}
