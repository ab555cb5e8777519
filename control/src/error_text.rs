//! One line for an error and its causes, for messages and logs (reqwest's top level says
//! little: "error sending request"). Below every adapter, so each can use it.

/// The error and each source it does not already say, joined with `: `.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        source = s.source();
    }
    text
}
