//! Text that leaves the daemon (status API, SSE, alerts, logs) made safe to show
//! (issue 17): [`excerpt`] shortens and escapes a parse error's quotation of a file's
//! own text, and [`redact_url`] hides the userinfo (user name, password, token) of a URL.
//! Pure functions of their input; no IO.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest quoted run (between backticks or double quotes) kept by [`excerpt`], in chars.
pub const MAX_QUOTE_CHARS: usize = 32;
/// Longest message [`excerpt`] returns, in chars (plus a final `…`).
pub const MAX_MESSAGE_CHARS: usize = 240;

/// A message about a file, safe to show: every quoted run (`` `...` `` or `"..."`, how
/// parsers quote the file's text) is cut to [`MAX_QUOTE_CHARS`] characters, every
/// character that is not printable ASCII is escaped (`\u{1b}`), and the whole is cut to
/// [`MAX_MESSAGE_CHARS`]. So an error never carries more than a short, escaped excerpt
/// of what the file says, and never a terminal control sequence.
pub fn excerpt(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS + 8));
    let mut written = 0usize;
    // The quote character of the run we are in, and how many chars of it were kept.
    let mut quote: Option<(char, usize)> = None;
    for c in message.chars() {
        if written >= MAX_MESSAGE_CHARS {
            out.push('…');
            return out;
        }
        match quote {
            Some((open, _)) if c == open => quote = None,
            Some((open, kept)) => {
                if kept == MAX_QUOTE_CHARS {
                    out.push('…');
                    written += 1;
                }
                quote = Some((open, kept + 1));
                if kept >= MAX_QUOTE_CHARS {
                    continue;
                }
            }
            None if c == '`' || c == '"' => quote = Some((c, 0)),
            None => {}
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
            written += 1;
        } else {
            let before = out.len();
            write!(out, "{}", c.escape_unicode()).expect("writing to a String cannot fail");
            written += out.len() - before;
        }
    }
    out
}

/// `url` with any userinfo (`user:password@`) replaced by `***@`, for printing. A URL
/// without userinfo, an scp-like `git@host:path` (a user name, no secret) or text that
/// is not a URL comes back unchanged.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => Cow::Owned(format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..])),
        None => Cow::Borrowed(url),
    }
}

/// Every URL inside `text` redacted with [`redact_url`] (for messages from libraries
/// that quote the URL they were given).
pub fn redact_urls_in(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme runs back to the previous non-scheme character.
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || c == '`' || c == '\'' || c == '"')
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The host of a URL (`https://user@host:443/x` -> `host`), lower-cased, or `None`
/// when `url` is not of the `scheme://` form.
pub fn url_host(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17, defect 2: quotations are cut and escaped, the whole is bounded.
    #[test]
    fn excerpts_are_short_and_escaped() {
        let secret = "S3CR3T".repeat(100);
        let message = format!("unknown field `{secret}`, expected one of apiVersion, kind");
        let shown = excerpt(&message);
        assert!(!shown.contains(&secret[..40]), "{shown}");
        assert!(shown.starts_with("unknown field `S3CR3T"), "{shown}");
        assert!(
            shown.ends_with("…`, expected one of apiVersion, kind"),
            "{shown}"
        );
        assert_eq!(excerpt("bad \u{1b}[2J \u{7}"), "bad \\u{1b}[2J \\u{7}");
        assert!(excerpt(&"x".repeat(10_000)).chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert_eq!(
            excerpt("metadata.name: group `web` is defined"),
            "metadata.name: group `web` is defined"
        );
    }

    /// Issue 17, defect 4: userinfo is hidden, everything else kept.
    #[test]
    fn urls_lose_their_userinfo() {
        assert_eq!(
            redact_url("https://x-token:ghp_secret@git.example.com/infra.git"),
            "https://***@git.example.com/infra.git"
        );
        assert_eq!(
            redact_url("https://git.example.com/a@b"),
            "https://git.example.com/a@b"
        );
        assert_eq!(
            redact_url("git@github.com:acme/infra.git"),
            "git@github.com:acme/infra.git"
        );
        assert_eq!(redact_url("ssh://git:pw@host:22/x"), "ssh://***@host:22/x");
        assert_eq!(
            redact_urls_in("failed to fetch 'https://u:p@h/x.git': 401 (see http://a:b@c)"),
            "failed to fetch 'https://***@h/x.git': 401 (see http://***@c)"
        );
        assert_eq!(
            url_host("https://u:p@Git.Example.com:443/x").as_deref(),
            Some("git.example.com")
        );
        assert_eq!(url_host("http://[::1]:80/x").as_deref(), Some("::1"));
        assert_eq!(url_host("file:///tmp/x").as_deref(), Some(""));
        assert_eq!(url_host("git@h:x"), None);
    }
}
