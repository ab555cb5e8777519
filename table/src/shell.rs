//! The app shell's share of the contract that the gateway applies: how a catalog path or an
//! exclude prefix covers a request path. (The shell fields' validation is in `validate`.)

/// Route-prefix semantics (`gateway::route`): a prefix ending in `/` covers everything under
/// it; otherwise itself and paths continuing with `/`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}
