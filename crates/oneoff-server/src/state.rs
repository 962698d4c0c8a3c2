//! Everything a request handler can reach, in one cloneable struct.

use std::sync::Arc;

use oneoff_core::Config;
use oneoff_store::Store;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalogs;
use crate::executor::ExecutorHandle;
use crate::hub::LogHub;
use crate::reload::Reloader;
use crate::viewers::{Counters, Viewers};

#[derive(Clone)]
pub struct AppState {
    /// The settings in force since the start; its `catalog` is empty: the jobs are in
    /// `catalogs`, which a reload replaces.
    pub config: Arc<Config>,
    pub catalogs: Catalogs,
    pub reloader: Arc<Reloader>,
    pub store: Store,
    pub executor: ExecutorHandle,
    pub hub: LogHub,
    /// Cancelled when the server stops; ends long-polls and followed streams promptly.
    pub shutdown: CancellationToken,
    pub viewers: Arc<Viewers>,
    pub counters: Arc<Counters>,
    pub jwt: Arc<crate::jwt::JwtVerifier>,
    pub audit: Arc<crate::audit_trail::AuditTrail>,
}
