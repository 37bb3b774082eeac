//! Secret hygiene: secrets are wrapped so they cannot be printed by accident,
//! and any text that might contain one (a child's stderr, a URL) is scrubbed
//! before it reaches the job log or an error message.

use std::fmt;

/// A secret value (password, token, key). `Debug` and `Display` print
/// `[redacted]`; the value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The raw value, for the one place that must send it (a header, a child's env).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Replaces every known secret in a text with `[redacted]`.
///
/// Secrets shorter than 4 characters are not scrubbed: replacing every `a` in
/// a log would destroy it, and such values are not credentials worth hiding.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, secret: &Secret) {
        self.add_str(secret.expose());
    }
    pub fn add_str(&mut self, value: &str) {
        if value.len() >= 4 && !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_string());
            // Longest first, so a secret that contains another is removed whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }
    pub fn redact(&self, text: &str) -> String {
        let mut out = redact_url_credentials(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }
}

/// Removes `user:password@` from every URL in a text
/// (`https://u:p@host/x` → `https://host/x`).
pub fn redact_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace, quote or end.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'' || c == '>')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s} {s:?}"), "[redacted] Secret([redacted])");
        assert_eq!(s.expose(), "hunter22");
    }

    #[test]
    fn redactor_scrubs_longest_first() {
        let mut r = Redactor::new();
        r.add_str("abcd");
        r.add_str("abcdefgh");
        r.add_str("x"); // too short to scrub
        assert_eq!(
            r.redact("token abcdefgh and abcd x"),
            "token [redacted] and [redacted] x"
        );
    }

    #[test]
    fn url_credentials_removed() {
        assert_eq!(
            redact_url_credentials("clone https://oauth2:glpat-xyz@gitlab.com/a/b.git failed"),
            "clone https://gitlab.com/a/b.git failed"
        );
        assert_eq!(
            redact_url_credentials("http://host:5000/v2/"),
            "http://host:5000/v2/"
        );
        assert_eq!(redact_url_credentials("no url here"), "no url here");
        assert_eq!(redact_url_credentials("\"https://u:p@h\""), "\"https://h\"");
    }
}
