//! The one integration-test binary: boots the real server (real SQLite file, real child
//! processes, real HTTP on a loopback port) and drives it through the API and the CLI.

mod api;
mod auth;
mod cli;
mod doctor;
mod executor;
mod hostile_disk;
mod jwt;
mod logs;
mod proxy;
mod restart;
mod streams;
mod support;
