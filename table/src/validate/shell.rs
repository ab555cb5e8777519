//! Validation of the app-shell fields of a tenant: display name, catalog and shell settings,
//! and the rule for the labels people read.

use super::{Problem, TenantContext};
use crate::path::normalise_path;
use crate::path::prefix_matches;
use crate::wire::Tenant;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Most apps in one tenant's catalog, and most shell exclude prefixes.
pub const MAX_CATALOG_APPS: usize = 64;
pub const MAX_SHELL_EXCLUDES: usize = 64;
/// Longest tenant display name and catalog app title, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
pub const MAX_APP_TITLE_CHARS: usize = 64;
const MAX_SHELL_PATH_LEN: usize = 256;
const MAX_ICON_LEN: usize = 64;

/// Every problem with `tenant`'s display name, catalog and shell, appended to `problems`.
/// Paths are relative to the tenant.
pub(super) fn check_shell_fields(
    tenant: &Tenant,
    ctx: &TenantContext<'_>,
    problems: &mut Vec<Problem>,
) {
    if let Some(name) = tenant.display_name.as_deref().filter(|_| !ctx.skip.labels) {
        if let Err(why) = label(name, MAX_DISPLAY_NAME_CHARS) {
            problems.push(Problem::new("display_name", why.to_string()));
        }
    }
    if tenant.catalog.len() > MAX_CATALOG_APPS {
        problems.push(Problem::new(
            "catalog",
            format!("more than {MAX_CATALOG_APPS} apps"),
        ));
    }
    let mut paths = HashSet::new();
    for (i, app) in tenant.catalog.iter().enumerate() {
        let aat = format!("catalog[{i}]");
        if !ctx.skip.labels {
            if let Err(why) = label(&app.title, MAX_APP_TITLE_CHARS) {
                problems.push(Problem::new(format!("{aat}.title"), why.to_string()));
            }
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
        } else if !ctx.skip.routes
            && !tenant
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
        if !(ctx.has_upstream)(up) {
            problems.push(Problem::new(
                "shell.upstream",
                format!("unknown upstream {up:?}"),
            ));
        }
    }
    if shell.excludes.len() > MAX_SHELL_EXCLUDES {
        problems.push(Problem::new(
            "shell.excludes",
            format!("more than {MAX_SHELL_EXCLUDES} prefixes"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, prefix) in shell.excludes.iter().enumerate() {
        if !is_shell_path(prefix) {
            problems.push(Problem::new(
                format!("shell.excludes[{i}]"),
                format!("{prefix:?} {NOT_NORMAL}"),
            ));
        } else if !seen.insert(prefix.as_str()) {
            problems.push(Problem::new(
                format!("shell.excludes[{i}]"),
                format!("{prefix:?} listed twice"),
            ));
        }
    }
}

const NOT_NORMAL: &str = "is not a normalised absolute path of at most 256 bytes (starts with '/', no '//', '.', '..' or escapes of plain characters)";

fn is_shell_path(p: &str) -> bool {
    p.len() <= MAX_SHELL_PATH_LEN && matches!(normalise_path(p), Ok(Cow::Borrowed(_)))
}

/// Why a label people read (a display name, an app title) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelProblem {
    /// Empty or only white space.
    Blank,
    /// More characters than the limit it was checked against.
    TooLong(usize),
    /// A control character (a line break, a tab…).
    Control,
}

impl fmt::Display for LabelProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelProblem::Blank => f.write_str("must not be empty or blank"),
            LabelProblem::TooLong(max) => write!(f, "longer than {max} characters"),
            LabelProblem::Control => f.write_str("must not contain control characters"),
        }
    }
}

/// The label rule: not blank, at most `max_chars` characters, no control characters.
pub fn label(s: &str, max_chars: usize) -> Result<(), LabelProblem> {
    if s.trim().is_empty() {
        Err(LabelProblem::Blank)
    } else if s.chars().count() > max_chars {
        Err(LabelProblem::TooLong(max_chars))
    } else if s.chars().any(char::is_control) {
        Err(LabelProblem::Control)
    } else {
        Ok(())
    }
}

fn is_icon(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ICON_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b':')
}
