//! The one integration-test binary: boots the real server (real SQLite file, real child
//! processes, real HTTP on a loopback port) and drives it through the API and the CLI. With
//! `ONEOFF_TEST_DATABASE=postgres` every server stores in a throwaway PostgreSQL instead
//! (`oneoff-testpg`), except the tests of the SQLite file itself.

mod api;
mod api_doc;
mod auth;
mod base_path;
mod behind_a_balancer;
mod cli;
mod cli_conventions;
mod cluster;
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
mod log_search;
mod log_tail;
mod logs;
mod messages;
mod metrics;
mod migrate_store;
mod openapi;
mod postgres_tls;
mod progress;
mod proxy;
mod reload;
mod replicas;
mod restart;
mod server_log;
mod settings_env;
mod streams;
mod suite;
mod support;
mod ui_api;
