//! The catalog in force. A reload (`kill -HUP`, `POST /api/v1/admin/reload`) replaces it as a
//! whole; whoever reads it takes the current one for the length of one decision, so a
//! request or a claim sees one catalog, never half of two. A run keeps the job definition it
//! started with (its supervisor holds its own copy), whatever is reloaded meanwhile.

use std::sync::{Arc, PoisonError, RwLock};

use oneoff_core::Catalog;

/// Cheap to clone; every clone sees the same catalog.
#[derive(Clone, Default)]
pub struct Catalogs(Arc<RwLock<Arc<Catalog>>>);

impl Catalogs {
    pub fn new(catalog: Catalog) -> Catalogs {
        Catalogs(Arc::new(RwLock::new(Arc::new(catalog))))
    }

    /// The catalog in force now.
    pub fn current(&self) -> Arc<Catalog> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts `catalog` in force for every later reader.
    pub fn replace(&self, catalog: Catalog) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
    }
}
