//! TLS to PostgreSQL as users of `libpq` know it, and its refusals in our words.
//!
//! Two things differ in the driver, and are made right here before the first connection:
//! `sslmode=require` with a root certificate checks the server's certificate against it in
//! libpq (it acts as `verify-ca`), while the driver would accept any certificate; and a root
//! certificate file that cannot be read, or holds no certificate, is refused at start instead
//! of failing each connection or being ignored. The driver reports a refused certificate as
//! the TLS library's error; [`refusal`] says what it means and what to do.

use std::io;
use std::path::{Path, PathBuf};

use oneoff_core::StoreUrl;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::CertificateError;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::StoreError;

/// What a refusal is checked against: the host the URL names, the CA it trusts, and the
/// `sslmode` as the user wrote it.
pub(super) struct TlsContext {
    host: String,
    root_certificate: Option<PathBuf>,
    mode: PgSslMode,
}

/// Applies libpq's meaning of `sslmode=require` with a root certificate, and checks that the
/// root certificate can be used. `url` is the text the options were parsed from.
pub(super) fn prepare(url: &str, options: PgConnectOptions) -> Result<(TlsContext, PgConnectOptions), StoreError> {
    let from_url = match StoreUrl::parse(url) {
        Ok(StoreUrl::Postgres(url)) => url.root_certificate(),
        _ => None,
    };
    // The driver also reads PGSSLROOTCERT when the URL names none.
    let root_certificate =
        from_url.or_else(|| std::env::var_os("PGSSLROOTCERT").filter(|path| !path.is_empty()).map(PathBuf::from));
    if let Some(path) = &root_certificate {
        check_root_certificate(path)?;
    }
    let mode = options.get_ssl_mode();
    let options = if matches!(mode, PgSslMode::Require) && root_certificate.is_some() {
        options.ssl_mode(PgSslMode::VerifyCa)
    } else {
        options
    };
    Ok((TlsContext { host: options.get_host().to_string(), root_certificate, mode }, options))
}

fn check_root_certificate(path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|error| {
        StoreError::Tls(format!(
            "sslrootcert {shown} cannot be read ({}): give the PEM file of the CA that signed the database \
             server's certificate, readable by the user oneoff runs as",
            io_reason(&error)
        ))
    })?;
    let mut certificates = CertificateDer::pem_slice_iter(&pem);
    match certificates.next() {
        Some(Ok(_)) if certificates.all(|certificate| certificate.is_ok()) => Ok(()),
        Some(_) => Err(StoreError::Tls(format!(
            "sslrootcert {shown} holds a damaged certificate: give the PEM file of the CA that signed the database \
             server's certificate"
        ))),
        None => Err(StoreError::Tls(format!(
            "sslrootcert {shown} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`): give the CA certificate \
             that signed the database server's certificate"
        ))),
    }
}

fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}

/// The refusal of a TLS connection to the database server in our words, with the fix, when
/// `error` is one; `context` from [`prepare`] names the host and the CA when known.
pub(super) fn refusal(error: &sqlx::Error, context: Option<&TlsContext>) -> Option<StoreError> {
    let text = match error {
        sqlx::Error::Tls(inner) if inner.to_string().contains("does not support TLS") => {
            let mode = context.map_or("this sslmode", |context| mode_name(context.mode));
            format!(
                "the database server does not offer TLS, which sslmode={mode} demands: turn `ssl` on in PostgreSQL, \
                 or choose another sslmode in the URL"
            )
        }
        sqlx::Error::Io(io) => certificate_refusal(rustls_error(io)?, context),
        sqlx::Error::Tls(inner) => match inner.downcast_ref::<io::Error>().and_then(rustls_error) {
            Some(rustls) => certificate_refusal(rustls, context),
            None => format!("the TLS connection to the database server failed ({inner})"),
        },
        _ => return None,
    };
    Some(StoreError::Tls(text))
}

fn rustls_error(io: &io::Error) -> Option<&rustls::Error> {
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

fn certificate_refusal(error: &rustls::Error, context: Option<&TlsContext>) -> String {
    let trusted = match context.and_then(|context| context.root_certificate.as_deref()) {
        Some(path) => format!("the CA in sslrootcert ({})", path.display()),
        None => "a public CA (no sslrootcert is given)".to_string(),
    };
    let host = context.map_or("the URL's host", |context| context.host.as_str());
    let rustls::Error::InvalidCertificate(certificate) = error else {
        return format!("the TLS handshake with the database server failed ({error})");
    };
    match certificate {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the database server's certificate is not signed by {trusted}: set sslrootcert to the CA certificate \
             that signed the server's certificate"
        ),
        // The driver checks the name under verify-ca too (sqlx 0.8 knows only the older form
        // of rustls's name error), so no sslmode short of `require` without a CA gets past it.
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
            "the database server's certificate does not name `{host}`, the host in the URL: connect by a name or \
             address the certificate names (oneoff checks the name under sslmode=verify-ca as well as verify-full)"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the database server's certificate has expired: renew it on the database server".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the database server's certificate is not valid yet: check the clocks of both hosts".to_string()
        }
        other => {
            format!("the database server's certificate was refused ({other:?}): see the database server's TLS settings")
        }
    }
}

fn mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}
