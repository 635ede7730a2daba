//! [`chain`]: the display adapter every log line uses for an error (issue 17, defect
//! 10): the error's message followed by each of its sources, `outer: cause: root`, so a
//! log keeps the cause and not only the outer message (as `{:#}` does for `anyhow`).

use std::error::Error;
use std::fmt;

/// Displays an error with its whole source chain. Build it with [`chain`].
pub struct Chain<'a>(&'a (dyn Error + 'a));

/// `tracing::warn!(error = %chain(&err), ...)`: the error and every source, joined by
/// `: `. A source whose message is already the end of the text shown is skipped, so
/// errors that repeat their cause's message do not print it twice.
pub fn chain<'a>(err: &'a (dyn Error + 'a)) -> Chain<'a> {
    Chain(err)
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !text.is_empty() && !shown.ends_with(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&shown)
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the plan")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("database is locked")]
    struct Middle(#[source] std::io::Error);

    /// Issue 17, defect 10: the cause is in the text.
    #[test]
    fn shows_every_source() {
        let err = Outer(Middle(std::io::Error::other("disk full")));
        assert_eq!(
            chain(&err).to_string(),
            "reading the plan: database is locked: disk full"
        );
        let plain = std::io::Error::other("alone");
        assert_eq!(chain(&plain).to_string(), "alone");
    }
}
