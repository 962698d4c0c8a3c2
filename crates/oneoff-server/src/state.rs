//! Everything a request handler can reach, in one cloneable struct.

use std::sync::Arc;

use oneoff_core::Config;
use oneoff_store::Store;
use tokio_util::sync::CancellationToken;

use crate::executor::ExecutorHandle;
use crate::hub::LogHub;
use crate::viewers::{Counters, Viewers};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
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
