//! Protocol values in the config, parsed once when the file is read: the
//! gateway holds `HeaderName`s and `Method`s, never text it parses again.
//! A value that does not parse is a config problem under its own key.

use http::{HeaderName, Method};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A header name (`X-Forwarded-User`), held lower-cased as HTTP/2 sends it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header(pub HeaderName);

impl Header {
    pub fn from_static(name: &'static str) -> Self {
        Header(HeaderName::from_static(name))
    }
}

impl std::ops::Deref for Header {
    type Target = HeaderName;
    fn deref(&self) -> &HeaderName {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HeaderName::from_bytes(text.as_bytes())
            .map(Header)
            .map_err(|_| serde::de::Error::custom(format!("\"{text}\" is not a valid header name")))
    }
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A route's allowed methods; empty means any but `CONNECT` and `TRACE`.
/// Written in capitals, as the method names of RFC 9110 are (methods are
/// case-sensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Methods(pub Vec<Method>);

impl Methods {
    /// `CONNECT` (RFC 9110 §9.3.6: a tunnel, not a request for the path, and
    /// RFC 8441's extended form, a WebSocket the Origin rule never saw) and
    /// `TRACE` (§9.3.8: echoes the request, credentials included, back) are
    /// not ordinary requests: only a route that names them takes them.
    /// Any other spelling of them (`connect`, `Trace`) is refused
    /// everywhere: it is another method to RFC 9110, yet an upstream that
    /// folds case would read it as the tunnel or the echo.
    pub fn allows(&self, method: &Method) -> bool {
        let name = method.as_str();
        let special = name.eq_ignore_ascii_case("CONNECT") || name.eq_ignore_ascii_case("TRACE");
        if self.0.is_empty() {
            return !special;
        }
        self.0.contains(method) && (!special || name == "CONNECT" || name == "TRACE")
    }
}

#[cfg(test)]
mod method_tests {
    use super::*;

    #[test]
    fn connect_and_trace_only_where_a_route_names_them() {
        let any = Methods::default();
        for m in [Method::GET, Method::POST, Method::DELETE, Method::OPTIONS] {
            assert!(any.allows(&m), "{m}");
        }
        let custom = Method::from_bytes(b"PROPFIND").unwrap();
        assert!(any.allows(&custom));
        assert!(!any.allows(&Method::CONNECT));
        assert!(!any.allows(&Method::TRACE));
        let named = Methods(vec![Method::GET, Method::TRACE]);
        assert!(named.allows(&Method::TRACE));
        assert!(!named.allows(&Method::CONNECT));
        assert!(!named.allows(&Method::POST));
        // Other spellings of the two: refused on every route.
        for spelling in ["connect", "Connect", "trace", "tRACE"] {
            let m = Method::from_bytes(spelling.as_bytes()).unwrap();
            assert!(!any.allows(&m), "{spelling}");
            assert!(!named.allows(&m), "{spelling}");
        }
    }
}

impl<'de> Deserialize<'de> for Methods {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|m| match Method::from_bytes(m.as_bytes()) {
                Ok(method) if m.to_ascii_uppercase() == m => Ok(method),
                _ => Err(serde::de::Error::custom(format!(
                    "\"{m}\" is not an upper-case HTTP method"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Methods)
    }
}

impl Serialize for Methods {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Method::as_str))
    }
}

/// A duration that may be switched off: `"off"` (or absent) is `None`,
/// anything else is a humantime duration such as `"5m"`.
pub mod off_or_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        humantime_serde::re::humantime::parse_duration(text.trim())
            .map(Some)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "\"{text}\": {e} (a duration such as \"5m\", or \"off\")"
                ))
            })
    }

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_str("off"),
            Some(d) => {
                s.serialize_str(&humantime_serde::re::humantime::format_duration(*d).to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_and_methods_parse_once() {
        let h: Header = serde_json::from_str("\"X-Forwarded-User\"").unwrap();
        assert_eq!(h.as_str(), "x-forwarded-user");
        assert_eq!(serde_json::to_string(&h).unwrap(), "\"x-forwarded-user\"");
        assert!(serde_json::from_str::<Header>("\"bad header\"").is_err());

        let m: Methods = serde_json::from_str("[\"GET\", \"PURGE\"]").unwrap();
        assert!(m.allows(&Method::GET) && !m.allows(&Method::POST));
        assert!(Methods::default().allows(&Method::DELETE));
        for bad in ["[\"get\"]", "[\"GE T\"]"] {
            assert!(serde_json::from_str::<Methods>(bad).is_err(), "{bad}");
        }
    }
}
