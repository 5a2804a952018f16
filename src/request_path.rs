//! The one canonical request path. Routing, route policy, CSRF, forward-auth
//! and forwarding all act on the path [`canonicalize`] returns, and the
//! upstream receives exactly that path, so what was authorized is what the
//! upstream serves.
//!
//! An upstream decodes a percent-encoded path before it routes: `/api/%61dmin`
//! is `/api/admin` to it, as RFC 3986 §6.2.2.2 says it must be. A gateway that
//! matched routes on the raw text would judge one path and forward another.
//! So the rules, in order:
//! - origin-form only (RFC 9112 §3.2.1): starts with `/`, at most
//!   [`MAX_PATH`] bytes, only the characters RFC 3986 §3.3 allows in a path;
//!   raw `\`, controls, spaces and non-ASCII bytes are refused;
//! - escapes of unreserved characters are decoded (`%61` -> `a`, `%2E` -> `.`),
//!   the remaining escapes get upper-case hex (RFC 3986 §6.2.2.1); a malformed
//!   escape (`%u0061`, `%4`, `%zz`) is refused;
//! - escapes that change the structure for some parser are refused: `%2F` and
//!   `%5C` (a separator inside a segment), `%00` and other controls, `%3B`,
//!   and `%25` followed by two hex digits (a double encoding such as `%252F`,
//!   which an upstream that decodes twice reads as `/`);
//! - the escapes must decode to valid UTF-8;
//! - `;` path parameters are refused (servlet containers read `/admin;x/` as
//!   `/admin/`, so a route matched on the text would be walked around);
//! - dot segments (`.`, `..`, also when encoded) are refused rather than
//!   resolved: no legitimate client sends them, and refusing leaves no room
//!   for two parsers to resolve them differently;
//! - empty segments (`//`) are refused, except the trailing one of a path
//!   that ends in `/`: some servers merge slashes and some do not.
//!
//! Route prefixes are canonical too (the config insists), and a prefix
//! matches only on a segment boundary.

use std::borrow::Cow;

/// The longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;

/// Why a request path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is longer than {MAX_PATH} bytes")]
    TooLong,
    #[error("the path does not start with '/'")]
    NotOriginForm,
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    #[error("the path has an encoded '/' or '\\', or a raw '\\'")]
    Separator,
    #[error("the path has a control character, space or non-ASCII byte")]
    BadCharacter,
    #[error("the path's escapes are not valid UTF-8")]
    InvalidUtf8,
    #[error("the path has a ';' parameter")]
    Parameter,
    #[error("the path is percent-encoded twice")]
    DoubleEncoding,
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    #[error("the path has an empty segment ('//')")]
    EmptySegment,
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path may carry unescaped (RFC 3986 §3.3 `pchar` and `/`),
/// less `;`, which is refused on its own.
fn is_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'/' | b':'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The canonical form of a request path (the part of the target before `?`),
/// or why it is refused. Borrows when the path is canonical already, as
/// almost every real request's is. Idempotent: a canonical path canonicalises
/// to itself.
pub fn canonicalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let bytes = raw.as_bytes();
    // Written only once the path differs from the raw text.
    let mut out: Option<Vec<u8>> = None;
    let mut escapes = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(PathError::BadEscape);
            };
            let v = hi << 4 | lo;
            match v {
                b'/' | b'\\' => return Err(PathError::Separator),
                b';' => return Err(PathError::Parameter),
                0..=0x1f | 0x7f => return Err(PathError::BadCharacter),
                v if is_unreserved(v) => {
                    out.get_or_insert_with(|| bytes[..i].to_vec()).push(v);
                }
                v => {
                    escapes = true;
                    let canonical = [
                        b'%',
                        UPPER_HEX[(v >> 4) as usize],
                        UPPER_HEX[(v & 15) as usize],
                    ];
                    if out.is_none() && bytes[i..i + 3] != canonical {
                        out = Some(bytes[..i].to_vec());
                    }
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(&canonical);
                    }
                }
            }
            i += 3;
            continue;
        }
        match b {
            b';' => return Err(PathError::Parameter),
            b'\\' => return Err(PathError::Separator),
            b if is_path_char(b) => {
                if let Some(o) = out.as_mut() {
                    o.push(b);
                }
            }
            _ => return Err(PathError::BadCharacter),
        }
        i += 1;
    }
    let path: Cow<'_, str> = match out {
        // Only ASCII was written: the bytes are valid UTF-8.
        Some(o) => Cow::Owned(String::from_utf8(o).map_err(|_| PathError::BadCharacter)?),
        None => Cow::Borrowed(raw),
    };
    check_segments(&path)?;
    if escapes {
        if has_double_encoding(&path) {
            return Err(PathError::DoubleEncoding);
        }
        if percent_encoding::percent_decode_str(&path)
            .decode_utf8()
            .is_err()
        {
            return Err(PathError::InvalidUtf8);
        }
    }
    Ok(path)
}

/// Dot segments anywhere, empty segments anywhere but at the end.
fn check_segments(path: &str) -> Result<(), PathError> {
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        match segment {
            "." | ".." => return Err(PathError::DotSegment),
            "" if segments.peek().is_some() => return Err(PathError::EmptySegment),
            _ => {}
        }
    }
    Ok(())
}

/// `%25` followed by two hex digits: an escape of an escape.
fn has_double_encoding(path: &str) -> bool {
    path.match_indices("%25").any(|(i, _)| {
        let rest = &path.as_bytes()[i + 3..];
        rest.len() >= 2 && hex_value(rest[0]).is_some() && hex_value(rest[1]).is_some()
    })
}

/// Whether `path` (canonical) is `prefix` or lies below it, on a segment
/// boundary: `/api` covers `/api` and `/api/x`, never `/apix`. A prefix that
/// ends in `/` covers the same paths as without it. Letters compare
/// case-insensitively: many upstreams (IIS, ASP.NET, Express by default) serve
/// `/Admin` as `/admin`, so `/Admin` must meet `/admin`'s rules; for an
/// upstream that tells them apart, the stricter rule applies to a path it
/// does not serve anyway.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path.get(..prefix.len()).is_some_and(|head| {
            head.eq_ignore_ascii_case(prefix) && {
                let rest = &path[prefix.len()..];
                rest.is_empty() || rest.starts_with('/')
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/orders", "/api/orders"),
            ("/api/", "/api/"),
            ("/api/%61dmin/users", "/api/admin/users"),
            ("/api/admi%6E/users", "/api/admin/users"),
            ("/%41%42c", "/ABc"),
            ("/api/files/a%20b", "/api/files/a%20b"),
            ("/api/files/a%3fb", "/api/files/a%3Fb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a.b/c..d/.e/...", "/a.b/c..d/.e/..."),
            ("/%7Euser", "/~user"),
            ("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
            ("/100%25", "/100%25"),
            ("/%25zz", "/%25zz"),
        ] {
            assert_eq!(canonicalize(raw).as_deref(), Ok(want), "{raw}");
        }
        assert!(matches!(canonicalize("/api/orders"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn refusals() {
        use PathError::*;
        for (raw, want) in [
            ("", NotOriginForm),
            ("api/x", NotOriginForm),
            ("http://evil.com/api", NotOriginForm),
            ("*", NotOriginForm),
            ("/api/%2Fadmin", Separator),
            ("/api/..%2fadmin", Separator),
            ("/api/..%5cadmin", Separator),
            ("/api/..\\admin", Separator),
            ("/api\\..\\admin", Separator),
            ("/api/%252e%252e/admin", DoubleEncoding),
            ("/api/%252Fadmin", DoubleEncoding),
            ("/api/%25%32%46admin", DoubleEncoding),
            ("/api/%00/x", BadCharacter),
            ("/api/%0d%0aX: y", BadCharacter),
            ("/api/\x00", BadCharacter),
            ("/api/\t/x", BadCharacter),
            ("/api/ x", BadCharacter),
            ("/api/caf\u{e9}", BadCharacter),
            ("/api/a\"b", BadCharacter),
            ("/api/a<b", BadCharacter),
            ("/api/%u0061dmin", BadEscape),
            ("/api/%4", BadEscape),
            ("/api/%", BadEscape),
            ("/api/%zz", BadEscape),
            ("/api/%ff", InvalidUtf8),
            ("/api/%c3", InvalidUtf8),
            ("/admin;x/secret", Parameter),
            ("/api/..;/admin", Parameter),
            ("/api/%3bx", Parameter),
            ("/api/../admin", DotSegment),
            ("/api/..", DotSegment),
            ("/api/./x", DotSegment),
            ("/api/x/../../admin", DotSegment),
            ("/api/%2e%2e/admin", DotSegment),
            ("/api/%2E%2E/admin", DotSegment),
            ("/api/.%2e/admin", DotSegment),
            ("/api/%2e/admin", DotSegment),
            ("/.", DotSegment),
            ("/..", DotSegment),
            ("//evil.com/api", EmptySegment),
            ("/api//admin", EmptySegment),
            ("/%2F", Separator),
        ] {
            assert_eq!(canonicalize(raw), Err(want), "{raw:?}");
        }
        assert_eq!(
            canonicalize(&format!("/{}", "a".repeat(MAX_PATH))),
            Err(TooLong)
        );
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        for (path, prefix, want) in [
            ("/api", "/api/", true),
            ("/api/", "/api/", true),
            ("/api/x", "/api", true),
            ("/apix", "/api", false),
            ("/apix", "/api/", false),
            ("/x", "/", true),
            ("/", "/", true),
            ("/admin", "/admin/", true),
            ("/administrator", "/admin/", false),
            ("/Admin/x", "/admin/", true),
            ("/API/ADMIN", "/api/admin", true),
            ("/caf%C3%A9", "/caf%c3%a9", true),
        ] {
            assert_eq!(under_prefix(path, prefix), want, "{path} under {prefix}");
        }
    }
}
