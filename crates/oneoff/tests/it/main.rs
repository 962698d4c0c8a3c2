//! The one integration-test binary: boots the real server (real SQLite file, real child
//! processes, real HTTP on a loopback port) and drives it through the API and the CLI.

mod api;
mod api_doc;
mod auth;
mod cli;
mod cross_replica;
mod doctor;
mod doctor_defaults;
mod executor;
mod hostile_audit;
mod hostile_auth;
mod hostile_disk;
mod hostile_masking;
mod hostile_processes;
mod hostile_streams;
mod jwt;
mod logs;
mod messages;
mod progress;
mod proxy;
mod restart;
mod streams;
mod support;
mod ui_api;
