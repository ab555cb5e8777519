//! Realmgate, the data plane: a Pingora reverse proxy that resolves host → tenant from a
//! pushed routing table, routes by longest prefix, checks the route's auth policy against the
//! tenant's realm, serves the tenant app shell, and load-balances to upstream pools.

pub mod acme;
pub mod admin;
pub mod assertion;
pub mod auth;
pub mod background;
pub mod config;
pub mod connection;
pub mod errors;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod persistent;
pub mod proxy;
pub mod request;
pub mod route;
pub mod shell;
pub mod snapshot;
pub mod tenant;
pub mod tls;
pub mod upstream;
