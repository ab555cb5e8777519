//! Validation of the app-shell fields of a tenant: display name, catalog and shell settings.

use crate::path::normalise_path;
use crate::validate::Problem;
use crate::wire::{Table, Tenant};
use std::borrow::Cow;
use std::collections::HashSet;

/// Most apps in one tenant's catalog, and most shell exclude prefixes.
pub const MAX_CATALOG_APPS: usize = 64;
pub const MAX_SHELL_EXCLUDES: usize = 64;
const MAX_DISPLAY_NAME_CHARS: usize = 100;
const MAX_APP_NAME_CHARS: usize = 64;
const MAX_SHELL_PATH_LEN: usize = 256;
const MAX_ICON_LEN: usize = 64;

/// Every problem with `tenant`'s display name, catalog and shell, appended to `problems`.
pub(crate) fn check_shell_fields(
    at: &str,
    tenant: &Tenant,
    table: &Table,
    problems: &mut Vec<Problem>,
) {
    if let Some(name) = &tenant.display_name {
        if let Some(why) = bad_label(name, MAX_DISPLAY_NAME_CHARS) {
            problems.push(Problem::new(format!("{at}.display_name"), why));
        }
    }
    if tenant.catalog.len() > MAX_CATALOG_APPS {
        problems.push(Problem::new(
            format!("{at}.catalog"),
            format!("more than {MAX_CATALOG_APPS} apps"),
        ));
    }
    let mut paths = HashSet::new();
    for (i, app) in tenant.catalog.iter().enumerate() {
        let aat = format!("{at}.catalog[{i}]");
        if let Some(why) = bad_label(&app.name, MAX_APP_NAME_CHARS) {
            problems.push(Problem::new(format!("{aat}.name"), why));
        }
        if !is_shell_path(&app.path) {
            problems.push(Problem::new(
                format!("{aat}.path"),
                format!("{:?} {NOT_NORMAL}", app.path),
            ));
        } else if !paths.insert(app.path.as_str()) {
            problems.push(Problem::new(
                format!("{aat}.path"),
                format!("{:?} listed twice", app.path),
            ));
        } else if !tenant
            .routes
            .iter()
            .any(|r| prefix_matches(&r.prefix, &app.path))
        {
            problems.push(Problem::new(
                format!("{aat}.path"),
                format!("{:?}: no route of this tenant matches it", app.path),
            ));
        }
        if let Some(icon) = &app.icon {
            if !is_icon(icon) {
                problems.push(Problem::new(
                    format!("{aat}.icon"),
                    format!(
                        "{icon:?} is not an icon name (1-{MAX_ICON_LEN} of a-z, 0-9, '-', ':')"
                    ),
                ));
            }
        }
    }
    let Some(shell) = &tenant.shell else {
        return;
    };
    if let Some(up) = &shell.upstream {
        if !table.upstreams.contains_key(up) {
            problems.push(Problem::new(
                format!("{at}.shell.upstream"),
                format!("unknown upstream {up:?}"),
            ));
        }
    }
    if shell.excludes.len() > MAX_SHELL_EXCLUDES {
        problems.push(Problem::new(
            format!("{at}.shell.excludes"),
            format!("more than {MAX_SHELL_EXCLUDES} prefixes"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, prefix) in shell.excludes.iter().enumerate() {
        if !is_shell_path(prefix) {
            problems.push(Problem::new(
                format!("{at}.shell.excludes[{i}]"),
                format!("{prefix:?} {NOT_NORMAL}"),
            ));
        } else if !seen.insert(prefix.as_str()) {
            problems.push(Problem::new(
                format!("{at}.shell.excludes[{i}]"),
                format!("{prefix:?} listed twice"),
            ));
        }
    }
}

const NOT_NORMAL: &str = "is not a normalised absolute path of at most 256 bytes (starts with '/', no '//', '.', '..' or escapes of plain characters)";

fn is_shell_path(p: &str) -> bool {
    p.len() <= MAX_SHELL_PATH_LEN && matches!(normalise_path(p), Ok(Cow::Borrowed(_)))
}

/// Why a human-readable label is refused, if it is.
fn bad_label(s: &str, max_chars: usize) -> Option<String> {
    let n = s.chars().count();
    if s.trim().is_empty() {
        Some("must not be empty or blank".into())
    } else if n > max_chars {
        Some(format!("longer than {max_chars} characters"))
    } else if s.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

fn is_icon(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ICON_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b':')
}

/// Route-prefix semantics (`gateway::route`): a prefix ending in `/` covers everything under
/// it; otherwise itself and paths continuing with `/`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}
