//! What an audit record is about: a closed set of actions, each with a stable code (the
//! `action` column and the API's `action` field) and a sentence for people (the `message`).
//!
//! Codes are an interface: scripts filter on them, so they never change. Records written
//! before the codes existed hold prose for some denials (`denied.read the audit trail`);
//! [`AuditAction::decode`] reads those too, and an unknown text stays readable as
//! [`AuditAction::Unrecognised`] rather than hiding the record.

/// One kind of audited event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuditAction {
    RunStart,
    RunCancel,
    TokenCreate,
    TokenRevoke,
    /// The server started with an audit key and signed the chain it found (see `anchor`).
    AuditAnchor,
    /// A new catalog was put in force (`kill -HUP`, `POST /api/v1/admin/reload`).
    CatalogReload,
    /// A reload was refused (the file is invalid or unreadable); the catalog did not change.
    CatalogReloadRefused,
    /// A refused attempt (answered 403).
    Denied(Denial),
    /// A stored action this version does not know (written by hand or by a newer version).
    Unrecognised(String),
}

/// What a caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// Start a run of a job.
    Run,
    Cancel,
    View,
    AuditRead,
    AuditVerify,
    TokenCreate,
    TokenCreateForOthers,
    TokenRevoke,
    /// Use `/debug/echo`, which shows what reached the server.
    DebugEcho,
    /// Reload the catalog (`POST /api/v1/admin/reload`).
    Reload,
}

impl Denial {
    pub const ALL: [Denial; 10] = [
        Denial::Run,
        Denial::Cancel,
        Denial::View,
        Denial::AuditRead,
        Denial::AuditVerify,
        Denial::TokenCreate,
        Denial::TokenCreateForOthers,
        Denial::TokenRevoke,
        Denial::DebugEcho,
        Denial::Reload,
    ];

    /// The stable code, after `denied.`.
    pub fn code(self) -> &'static str {
        match self {
            Denial::Run => "run",
            Denial::Cancel => "cancel",
            Denial::View => "view",
            Denial::AuditRead => "audit.read",
            Denial::AuditVerify => "audit.verify",
            Denial::TokenCreate => "token.create",
            Denial::TokenCreateForOthers => "token.create_for_others",
            Denial::TokenRevoke => "token.revoke",
            Denial::DebugEcho => "debug.echo",
            Denial::Reload => "catalog.reload",
        }
    }

    /// What was refused, as the verb phrase of "alice may not …" (also the 403 message).
    pub fn verb(self) -> &'static str {
        match self {
            Denial::Run => "run",
            Denial::Cancel => "cancel",
            Denial::View => "view",
            Denial::AuditRead => "read the audit trail",
            Denial::AuditVerify => "verify the audit trail",
            Denial::TokenCreate => "create tokens",
            Denial::TokenCreateForOthers => "create tokens for other users or groups",
            Denial::TokenRevoke => "revoke this token",
            Denial::DebugEcho => "use /debug/echo",
            Denial::Reload => "reload the catalog",
        }
    }

    /// "alice may not cancel job `backfill`": the 403 message and the record's message.
    pub fn sentence(self, actor: &str, job: Option<&str>) -> String {
        match job {
            Some(job) => format!("{actor} may not {} job `{job}`", self.verb()),
            None => format!("{actor} may not {}", self.verb()),
        }
    }
}

impl AuditAction {
    /// The stable code: `run.start`, `denied.audit.read`, …
    pub fn code(&self) -> String {
        match self {
            AuditAction::RunStart => "run.start".into(),
            AuditAction::RunCancel => "run.cancel".into(),
            AuditAction::TokenCreate => "token.create".into(),
            AuditAction::TokenRevoke => "token.revoke".into(),
            AuditAction::AuditAnchor => "audit.anchor".into(),
            AuditAction::CatalogReload => "catalog.reload".into(),
            AuditAction::CatalogReloadRefused => "catalog.reload_refused".into(),
            AuditAction::Denied(denial) => format!("denied.{}", denial.code()),
            AuditAction::Unrecognised(text) => text.clone(),
        }
    }

    /// Reads a stored action: a code, or the prose older versions stored for denials.
    pub fn decode(stored: &str) -> AuditAction {
        if let Some(known) = AuditAction::known().into_iter().find(|action| action.code() == stored) {
            return known;
        }
        let legacy = stored.strip_prefix("denied.").and_then(|verb| Denial::ALL.into_iter().find(|d| d.verb() == verb));
        match legacy {
            Some(denial) => AuditAction::Denied(denial),
            None => AuditAction::Unrecognised(stored.to_string()),
        }
    }

    /// Every text this action may be stored as: its code, and the older prose of a denial.
    pub fn stored_forms(&self) -> Vec<String> {
        let mut forms = vec![self.code()];
        if let AuditAction::Denied(denial) = self {
            let legacy = format!("denied.{}", denial.verb());
            if !forms.contains(&legacy) {
                forms.push(legacy);
            }
        }
        forms
    }

    /// Every action this version writes, for documentation and decoding.
    pub fn known() -> Vec<AuditAction> {
        let mut all = vec![
            AuditAction::RunStart,
            AuditAction::RunCancel,
            AuditAction::TokenCreate,
            AuditAction::TokenRevoke,
            AuditAction::AuditAnchor,
            AuditAction::CatalogReload,
            AuditAction::CatalogReloadRefused,
        ];
        all.extend(Denial::ALL.into_iter().map(AuditAction::Denied));
        all
    }

    /// The sentence for a record that has no stored message (written before messages existed).
    pub fn sentence(&self, actor: &str, job: Option<&str>, run_id: Option<i64>) -> String {
        let run = |verb: &str| match (run_id, job) {
            (Some(run), Some(job)) => format!("{actor} {verb} run {run} of job `{job}`"),
            (Some(run), None) => format!("{actor} {verb} run {run}"),
            (None, _) => format!("{actor} {verb} a run"),
        };
        match self {
            AuditAction::RunStart => run("started"),
            AuditAction::RunCancel => run("cancelled"),
            AuditAction::TokenCreate => format!("{actor} created an API token"),
            AuditAction::TokenRevoke => format!("{actor} revoked an API token"),
            AuditAction::AuditAnchor => format!("{actor} signed the audit chain with the configured audit key"),
            AuditAction::CatalogReload => format!("{actor} reloaded the catalog"),
            AuditAction::CatalogReloadRefused => format!("{actor} asked for a reload of an invalid catalog"),
            AuditAction::Denied(denial) => denial.sentence(actor, job),
            AuditAction::Unrecognised(text) => format!("{actor}: {text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let codes: Vec<String> = AuditAction::known().iter().map(AuditAction::code).collect();
        for (action, code) in AuditAction::known().iter().zip(&codes) {
            assert_eq!(&AuditAction::decode(code), action);
            assert!(!code.contains(' '), "a code is one word: {code}");
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
    }

    #[test]
    fn prose_written_by_older_versions_is_decoded() {
        assert_eq!(AuditAction::decode("denied.read the audit trail"), AuditAction::Denied(Denial::AuditRead));
        assert_eq!(
            AuditAction::decode("denied.create tokens for other users or groups"),
            AuditAction::Denied(Denial::TokenCreateForOthers)
        );
        assert_eq!(AuditAction::decode("denied.view"), AuditAction::Denied(Denial::View));
        assert_eq!(AuditAction::decode("backup.restore"), AuditAction::Unrecognised("backup.restore".into()));
        assert_eq!(
            AuditAction::Denied(Denial::AuditRead).stored_forms(),
            vec!["denied.audit.read".to_string(), "denied.read the audit trail".to_string()]
        );
        assert_eq!(AuditAction::Denied(Denial::Run).stored_forms(), vec!["denied.run".to_string()]);
    }
}
