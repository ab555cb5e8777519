//! `realmctl`: Realmgate's control plane — tenant registry, REST API, routing-table compiler,
//! push to every gateway — and the CLI over its API.

pub mod acme;
pub mod acme_step;
pub mod api;
pub mod assertion_section;
pub mod body;
pub mod cli;
pub mod compile;
pub mod config;
pub mod discovery;
pub mod error_text;
pub mod ids;
pub mod kube_access;
pub mod leadership;
pub mod lease;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod operators;
pub mod percent;
pub mod provision;
pub mod push;
pub mod registry;
pub mod resolver;
pub mod server;
pub mod service;
pub mod time;
pub mod tls;
pub mod traffic;
pub mod ui;
pub mod views;
pub mod writer_lock;
