//! What the gateway reads out of claims and client-supplied text, one rule
//! each, used by every caller:
//!
//! - The groups claim ([`groups`]): a JSON array of strings, each element one
//!   group name (elements that are not strings are ignored); a string is
//!   **one** group name, never split (an IdP that sends `"Domain Admins"`
//!   means one group, and splitting it would grant membership the IdP never
//!   stated). Authorization (`allow_groups`) and the signed identity assertion
//!   use this list as it is.
//! - Group names in header values ([`header_groups`]): identity headers
//!   (`X-Forwarded-Groups`) and forward-auth's `X-Auth-Request-Groups` join
//!   the names with `,`. A name such a header cannot carry faithfully (empty,
//!   containing `,`, leading or trailing whitespace, or a control character)
//!   is left out of the header, so an upstream splitting on `,` reads exactly
//!   the groups authorization judged, never another one.
//! - Text in log lines ([`log_text`]): every value that comes from a token or
//!   a client (`sub`, claims, the IdP's error text, request headers) is
//!   written with control characters escaped, so it can never forge a log
//!   line or reach a terminal as an escape sequence.
//!
//! A leaf of the core: it imports nothing from the crate.

use serde_json::{Map, Value};
use std::fmt::{self, Write as _};

/// The caller's groups, read from the claim `claim` names: an array of
/// strings, or a string as one name (see the module's rule). An empty string
/// is no group.
pub fn groups<'a>(claims: &'a Map<String, Value>, claim: &str) -> Vec<&'a str> {
    match claims.get(claim) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.as_str()],
        _ => vec![],
    }
}

/// Whether a comma-joined header value carries `name` as itself: not empty,
/// no `,` (RFC 9110 §5.6.1 list separator), no whitespace at either end (list
/// parsers trim it, RFC 9110 §5.6.1), no control character (not header text,
/// RFC 9110 §5.5).
pub fn header_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(',')
        && name.trim() == name
        && !name.chars().any(char::is_control)
}

/// The groups as one header value, `,`-joined, with the names a header
/// cannot carry faithfully left out (logged at debug, escaped). `None` when
/// no name remains.
pub fn header_groups(claims: &Map<String, Value>, claim: &str) -> Option<String> {
    let (kept, dropped): (Vec<&str>, Vec<&str>) = groups(claims, claim)
        .into_iter()
        .partition(|g| header_safe(g));
    for name in dropped {
        tracing::debug!(
            group = %log_text(name),
            "a group name a comma-separated header cannot carry is left out of the header"
        );
    }
    Some(kept.join(",")).filter(|v| !v.is_empty())
}

/// `value` as it may be written into a log line: control characters (CR, LF,
/// ESC, DEL, C1), Unicode line and paragraph separators and bidirectional
/// overrides escaped as `\n`, `\r`, `\t` or `\u{…}`, and `\` as `\\` so an
/// escape in the log is never ambiguous with the text itself. Nothing is
/// allocated: the value is escaped as it is written.
pub fn log_text<T: fmt::Display>(value: T) -> LogText<T> {
    LogText(value)
}

/// See [`log_text`].
pub struct LogText<T>(T);

impl<T: fmt::Display> fmt::Display for LogText<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaper(f), "{}", self.0)
    }
}

impl<T: fmt::Display> fmt::Debug for LogText<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Characters a terminal or a log reader may take for layout rather than text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(|c: char| c == '\\' || needs_escape(c)) {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found at i");
            match c {
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Claims shapes and the groups every caller must read from them: what
/// authorization judges (`judged`), and what a comma-joined header carries
/// (`header`). Shared by the tests of policy, identity headers, forward-auth
/// and the assertion, so that none of them can read the claim another way.
#[cfg(test)]
pub(crate) struct GroupCase {
    pub name: &'static str,
    pub claim: fn() -> Value,
    pub judged: &'static [&'static str],
    /// Names authorization must not find (each alone in `allow_groups`: denied).
    pub not: &'static [&'static str],
    pub header: Option<&'static str>,
}

#[cfg(test)]
pub(crate) const GROUP_CASES: &[GroupCase] = &[
    GroupCase {
        name: "array",
        claim: || serde_json::json!(["devs", "admins"]),
        judged: &["devs", "admins"],
        not: &["dev"],
        header: Some("devs,admins"),
    },
    GroupCase {
        name: "a name with a comma is judged whole and left out of headers",
        claim: || serde_json::json!(["devs", "x,admins"]),
        judged: &["devs", "x,admins"],
        not: &["admins", "x"],
        header: Some("devs"),
    },
    GroupCase {
        name: "edge whitespace",
        claim: || serde_json::json!([" admins", "staff\t", "ops"]),
        judged: &[" admins", "staff\t", "ops"],
        not: &["admins", "staff"],
        header: Some("ops"),
    },
    GroupCase {
        name: "a string is one group, not split",
        claim: || serde_json::json!("admins staff"),
        judged: &["admins staff"],
        not: &["admins", "staff"],
        header: Some("admins staff"),
    },
    GroupCase {
        name: "a string with a comma is one group, kept out of headers",
        claim: || serde_json::json!("admins,staff"),
        judged: &["admins,staff"],
        not: &["admins", "staff"],
        header: None,
    },
    GroupCase {
        name: "control characters",
        claim: || serde_json::json!(["a\nb", "c\u{1b}[0m", "d\u{7f}", "ok"]),
        judged: &["a\nb", "c\u{1b}[0m", "d\u{7f}", "ok"],
        not: &["a", "b"],
        header: Some("ok"),
    },
    GroupCase {
        name: "non-strings and empty names",
        claim: || serde_json::json!(["", 5, null, {"g": 1}, ["admins"], "x"]),
        judged: &["", "x"],
        not: &["admins", "5"],
        header: Some("x"),
    },
    GroupCase {
        name: "empty string",
        claim: || serde_json::json!(""),
        judged: &[],
        not: &[""],
        header: None,
    },
    GroupCase {
        name: "not a list or string",
        claim: || serde_json::json!({"admins": true}),
        judged: &[],
        not: &["admins"],
        header: None,
    },
    GroupCase {
        name: "unicode names are header text",
        claim: || serde_json::json!(["équipe", "Domain Admins"]),
        judged: &["équipe", "Domain Admins"],
        not: &["Domain"],
        header: Some("équipe,Domain Admins"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_case_reads_as_the_table_says() {
        for case in GROUP_CASES {
            let mut claims = Map::new();
            claims.insert("groups".into(), (case.claim)());
            assert_eq!(groups(&claims, "groups"), case.judged, "{}", case.name);
            assert_eq!(
                header_groups(&claims, "groups").as_deref(),
                case.header,
                "{}",
                case.name
            );
            assert!(groups(&claims, "other").is_empty());
        }
    }

    #[test]
    fn log_text_escapes_what_could_forge_or_colour_a_line() {
        let cases = [
            ("alice", "alice"),
            ("élève 42 \"q\"", "élève 42 \"q\""),
            (
                "x\r\n2026-01-01T00:00:00Z INFO signed in sub=admin",
                "x\\r\\n2026-01-01T00:00:00Z INFO signed in sub=admin",
            ),
            ("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("tab\there", "tab\\there"),
            ("a\\nb", "a\\\\nb"),
            ("del\u{7f}c1\u{85}", "del\\u{7f}c1\\u{85}"),
            ("ls\u{2028}rlo\u{202e}", "ls\\u{2028}rlo\\u{202e}"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(log_text(raw).to_string(), want, "{raw:?}");
            assert_eq!(format!("{:?}", log_text(raw)), want, "{raw:?}");
        }
        // Any Display value, escaped as it is written.
        let e = std::io::Error::other("bad\nline");
        assert_eq!(log_text(&e).to_string(), "bad\\nline");
        for c in (0u32..0x110000).filter_map(char::from_u32) {
            let out = log_text(c).to_string();
            assert!(!out.chars().any(needs_escape), "{c:?} escaped as {out:?}");
        }
    }
}
