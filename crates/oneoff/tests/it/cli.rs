//! The CLI binary against a real server.
