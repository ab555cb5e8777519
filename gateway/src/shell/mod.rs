//! The tenant app shell: navigation detection (request filter), the built-in shell and its
//! assets, context injection into shell HTML (response filters), framing policy of app responses.
//!
//! `docs/app-shell.md` documents the decision table, the context and the `<z-frame>` API.

pub mod context;
pub mod decision;
pub mod frame;
pub mod inject;
pub mod serve;

pub use context::User;
pub use decision::{decide, ShellPage};
pub use serve::{asset, Asset, ShellState};

use crate::route::PoolIdx;
use context::{App, Context};
use realmgate_table::Tenant;
use std::collections::HashMap;

/// Paths under this prefix are the gateway's own (shell assets) on shell-enabled tenants.
pub const ASSET_PREFIX: &str = "/.realmgate/shell/";

/// A shell-enabled tenant's shell, compiled with the table.
#[derive(Debug)]
pub struct ShellRt {
    /// The tenant's own shell upstream; `None`: the built-in shell.
    pub upstream: Option<PoolIdx>,
    pub excludes: Box<[Box<str>]>,
    /// Catalog paths with their catalog index.
    pub apps: Box<[(Box<str>, u16)]>,
    pub context: Context,
    /// The built-in shell's `form-action` sources: its own origin, and the realm's, where the
    /// logout POST is redirected to end the realm session (browsers check `form-action` on
    /// redirects too).
    pub form_action: Box<str>,
}

impl ShellRt {
    /// `None` unless the tenant has a shell with `enabled: true`. The table is validated, so
    /// a named shell upstream exists in `pools`.
    pub fn compile(t: &Tenant, pools: &HashMap<&str, PoolIdx>) -> Option<Box<ShellRt>> {
        let shell = t.shell.as_ref().filter(|s| s.enabled)?;
        let apps: Vec<App<'_>> = t
            .catalog
            .iter()
            .map(|a| App {
                name: &a.title,
                path: &a.path,
                icon: a.icon.as_deref(),
            })
            .collect();
        Some(Box::new(ShellRt {
            upstream: shell
                .upstream
                .as_deref()
                .and_then(|u| pools.get(u).copied()),
            excludes: shell.excludes.iter().map(|e| e.as_str().into()).collect(),
            apps: t
                .catalog
                .iter()
                .enumerate()
                .map(|(i, a)| (a.path.as_str().into(), i as u16))
                .collect(),
            context: Context::new(&t.id, t.display_name.as_deref().unwrap_or(&t.id), &apps),
            form_action: context::form_action(t.realm.as_ref().map(|r| r.issuer.as_str())),
        }))
    }

    #[cfg(test)]
    pub fn for_test(apps: &[&str], excludes: &[&str]) -> ShellRt {
        ShellRt {
            upstream: None,
            excludes: excludes.iter().map(|&e| e.into()).collect(),
            apps: apps
                .iter()
                .enumerate()
                .map(|(i, &p)| (p.into(), i as u16))
                .collect(),
            context: Context::new("t", "T", &[]),
            form_action: context::form_action(None),
        }
    }
}
