//! The wire format of oneoff's HTTP API, shared by the server and the CLI.
//!
//! Only this crate's types are `Serialize`: domain types from `oneoff-core` are converted
//! by hand in [`v1`], so a change to the domain can never silently change the API.
//! [`Client`] is the thin HTTP client the CLI (and the integration tests) use.

pub mod client;
pub mod v1;

pub use client::{Client, ClientError};
